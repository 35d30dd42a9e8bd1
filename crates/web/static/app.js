// Ticketing: a little progressive enhancement. Every page works without it.
(function () {
  "use strict";

  // No double submits: a form's buttons are disabled once it is sent.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset.sending === "1") { event.preventDefault(); return; }
    form.dataset.sending = "1";
    form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
  });

  // The order page's countdown.
  var countdown = document.getElementById("countdown");
  if (countdown) {
    var expiresAt = Date.parse(countdown.dataset.expiresAt);
    var tick = function () {
      var left = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
      if (left === 0) {
        // A timer is not read out each second; its end is, once.
        countdown.setAttribute("role", "alert");
        countdown.textContent = "Order expired";
        var form = document.getElementById("pay-form");
        if (form) { form.querySelectorAll("button, input").forEach(function (e) { e.disabled = true; }); }
        clearInterval(timer);
        return;
      }
      var minutes = Math.floor(left / 60), seconds = left % 60;
      countdown.textContent = "Time left to pay: " + minutes + ":" + (seconds < 10 ? "0" : "") + seconds;
    };
    var timer = setInterval(tick, 1000);
    tick();
  }

  // Stripe's card form, on the order page only when a publishable key is set.
  var card = document.getElementById("card-element");
  if (card && window.Stripe) {
    var stripe = window.Stripe(card.dataset.stripeKey);
    var element = stripe.elements().create("card");
    element.mount(card);
    var payForm = document.getElementById("pay-form");
    payForm.addEventListener("submit", function (event) {
      if (document.getElementById("token").value) { return; }
      event.preventDefault();
      stripe.createPaymentMethod({ type: "card", card: element }).then(function (result) {
        if (result.error) {
          payForm.dataset.sending = "0";
          payForm.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
          alert(result.error.message);
          return;
        }
        document.getElementById("token").value = result.paymentMethod.id;
        payForm.submit();
      });
    }, true);
  }

  // 3-D Secure with Stripe.js: the bank's check opens on the page itself,
  // then the buyer comes back to where the payment is settled. Without
  // Stripe.js the panel's links do the same by navigation.
  var authentication = document.getElementById("authentication");
  if (authentication && authentication.dataset.stripeKey && window.Stripe) {
    window.Stripe(authentication.dataset.stripeKey)
      .handleNextAction({ clientSecret: authentication.dataset.clientSecret })
      .then(function () { window.location.assign(authentication.dataset.returnPath); });
  }
})();
