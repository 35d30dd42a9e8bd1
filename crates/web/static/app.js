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

  // Live availability (API.md "Live availability"): the home page and the
  // ticket page follow GET /api/tickets/events. A ticket that goes off sale
  // greys out with its state; on the unfiltered home page's last page a
  // ticket put on sale appears. Without this script the pages are as
  // rendered, and a reload shows the same.
  var liveList = document.querySelector("[data-live-list], [data-live-empty]");
  var liveTicket = document.querySelector("[data-live-ticket]");
  var OFF_SALE = { reserved: "Reserved", withdrawn: "Withdrawn", ended: "Event started" };

  // The sell form's UTC offset, when left empty: the browser's.
  var offsetField = document.querySelector("[data-utc-offset]");
  if (offsetField && !offsetField.value) {
    var minutes = -new Date().getTimezoneOffset();
    var sign = minutes < 0 ? "-" : "+";
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    offsetField.value = sign + pad(Math.floor(Math.abs(minutes) / 60)) + ":" + pad(Math.abs(minutes) % 60);
  }

  function money(price, currency) {
    var value = Number(price).toFixed(2);
    var symbol = { usd: "$", eur: "€", gbp: "£" }[currency];
    return symbol ? symbol + value : value + " " + String(currency).toUpperCase();
  }

  // An event's start as the pages show it, in the seller's own time and
  // offset: "Sat 14 Mar 2026, 20:00 +01:00" (the wall time is in the text).
  function eventWhen(startsAt) {
    var m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::\d{2})?([+-]\d{2}:\d{2})$/.exec(startsAt || "");
    if (!m) { return startsAt || ""; }
    var days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    var months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    var day = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3])).getUTCDay();
    return days[day] + " " + (+m[3]) + " " + months[+m[2] - 1] + " " + m[1] + ", " + m[4] + ":" + m[5] + " " + m[6];
  }

  function element(tag, className, text) {
    var e = document.createElement(tag);
    if (className) { e.className = className; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  function newCard(ticket, currency) {
    var href = "/tickets/" + encodeURIComponent(ticket.id);
    var card = element("li", "card ticket-card");
    card.dataset.ticketId = ticket.id;
    var title = element("h2", "ticket-title");
    var link = element("a", "", ticket.title);
    link.href = href;
    title.appendChild(link);
    card.appendChild(title);
    var when = eventWhen(ticket.startsAt);
    var seat = [["Section", ticket.section], ["Row", ticket.row], ["Seat", ticket.seat]]
      .filter(function (part) { return part[1]; })
      .map(function (part) { return part[0] + " " + part[1]; }).join(" · ");
    if (when || ticket.venue || seat) {
      var event = element("p", "event");
      if (when) {
        var time = element("time", "event-when", when);
        time.setAttribute("datetime", ticket.startsAt);
        event.appendChild(time);
      }
      if (ticket.venue) { event.appendChild(element("span", "event-venue", ticket.venue)); }
      if (seat) { event.appendChild(element("span", "event-seat", seat)); }
      card.appendChild(event);
    }
    card.appendChild(element("p", "price", money(ticket.price, currency)));
    var view = element("a", "button secondary", "View");
    view.href = href;
    view.setAttribute("aria-label", "View " + ticket.title);
    card.appendChild(view);
    return card;
  }

  // Shows a card's state: a badge while off sale, none while on sale.
  function showCardState(card, status) {
    var badge = card.querySelector(".live-badge");
    if (badge) { badge.remove(); }
    card.classList.toggle("off-sale", status !== "available");
    if (status !== "available") {
      badge = element("p", "badge live-badge status-" + status, OFF_SALE[status] || status);
      card.insertBefore(badge, card.querySelector(".price"));
    }
  }

  function onListChange(ticket) {
    var list = document.querySelector("[data-live-list]");
    var card = document.querySelector("[data-ticket-id='" + ticket.id + "']");
    if (card) {
      card.querySelector(".ticket-title a").textContent = ticket.title;
      card.querySelector(".price").textContent = money(ticket.price, (list || liveList).dataset.currency);
      showCardState(card, ticket.status);
      return;
    }
    if (ticket.status !== "available") { return; }
    var empty = document.querySelector("[data-live-empty]");
    if (empty) {
      list = element("ul", "grid");
      list.setAttribute("aria-label", "Tickets");
      list.dataset.liveList = "";
      list.dataset.liveNew = "";
      list.dataset.currency = empty.dataset.currency;
      empty.replaceWith(list);
    }
    if (list && list.hasAttribute("data-live-new")) {
      list.appendChild(newCard(ticket, list.dataset.currency));
    }
  }

  function onTicketChange(ticket) {
    var article = liveTicket;
    if (ticket.id !== article.dataset.liveTicket || ticket.status === article.dataset.status) { return; }
    article.dataset.status = ticket.status;
    var badge = article.querySelector(".badge");
    if (badge) { badge.remove(); }
    if (ticket.status !== "available") {
      badge = element("p", "badge status-" + ticket.status, OFF_SALE[ticket.status] || ticket.status);
      article.querySelector(".price").after(badge);
    }
    var buy = article.querySelector("form[action$='/purchase'] button");
    if (buy) { buy.disabled = ticket.status !== "available"; }
    var note = article.querySelector(".live-note");
    if (!note) {
      note = element("p", "alert live-note");
      note.setAttribute("role", "status");
      article.appendChild(note);
    }
    note.textContent = "";
    if (ticket.status === "available") {
      note.appendChild(document.createTextNode("This ticket is on sale again. "));
      var again = element("a", "", "Refresh");
      again.href = location.pathname;
      note.appendChild(again);
    } else {
      note.textContent = ticket.status === "withdrawn"
        ? "The seller has just withdrawn this ticket."
        : ticket.status === "ended"
          ? "The event has started: this ticket is no longer for sale."
          : "This ticket has just been reserved by an order.";
    }
  }

  if ((liveList || liveTicket) && window.EventSource) {
    var events = null;
    var retry = null;
    // Opens the stream. The browser reconnects by itself after a dropped
    // connection, but gives up on an answer that is not a stream (429 when
    // too many are open, 503): then try again later, waiting longer each
    // time with jitter so refused pages do not come back together. The
    // server asks for 10 s (Retry-After, which EventSource cannot read):
    // 10-20 s, then 20-30 s. The page stays as rendered meanwhile.
    var follow = function (attempt) {
      var source = new EventSource("/api/tickets/events");
      events = source;
      source.addEventListener("open", function () { attempt = 0; });
      source.addEventListener("ticket", function (event) {
        var ticket;
        try { ticket = JSON.parse(event.data); } catch (e) { return; }
        if (liveList) { onListChange(ticket); }
        if (liveTicket) { onTicketChange(ticket); }
      });
      // The server cannot say what was missed: start again from the page.
      source.addEventListener("reload", function () {
        source.close();
        location.reload();
      });
      source.addEventListener("error", function () {
        if (source.readyState !== EventSource.CLOSED) { return; }
        var base = attempt === 0 ? 10 : 20;
        var seconds = Math.min(30, base * (1 + Math.random()));
        retry = setTimeout(function () { follow(attempt + 1); }, seconds * 1000);
      });
    };
    follow(0);
    // A page kept by the browser's back/forward cache missed changes.
    window.addEventListener("pagehide", function () {
      clearTimeout(retry);
      events.close();
    });
    window.addEventListener("pageshow", function (event) { if (event.persisted) { location.reload(); } });
  }

  // The order page follows its order until it is paid or cancelled (the
  // payment completes it through events, a moment after the charge): each
  // request waits up to 20 s for the outcome (`?wait=20`), so the page
  // learns it when it happens, without polling.
  var orderStatus = document.getElementById("order-status");
  var FINAL = { complete: "Paid", cancelled: "Cancelled", expired: "Expired" };
  if (orderStatus && window.fetch && !FINAL[orderStatus.dataset.status] && orderStatus.dataset.status !== "expired") {
    var polls = 0;
    var showFinal = function (status) {
      var countdown = document.getElementById("countdown");
      if (status === "cancelled" && countdown && Date.parse(countdown.dataset.expiresAt) <= Date.now()) {
        status = "expired";
      }
      orderStatus.textContent = FINAL[status];
      orderStatus.className = "status status-" + status;
      orderStatus.dataset.status = status;
      // An expired order keeps its countdown, which says so.
      (status === "expired" ? ["pay-form", "processing"] : ["pay-form", "countdown", "processing"]).forEach(function (id) {
        var e = document.getElementById(id);
        if (e) { e.remove(); }
      });
      document.querySelectorAll("form[action$='/cancel']").forEach(function (f) { f.remove(); });
      if (status === "complete") {
        var done = element("p", "alert success", "Paid — the ticket is yours.");
        done.setAttribute("role", "status");
        orderStatus.closest("p").after(done);
      }
    };
    var poll = function () {
      polls += 1;
      fetch("/api/orders/" + encodeURIComponent(orderStatus.dataset.orderId) + "?wait=20", { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (order) {
          if (order && (order.status === "complete" || order.status === "cancelled")) { showFinal(order.status); return; }
          if (order && order.status === "awaiting:payment") {
            orderStatus.textContent = "Payment in progress";
            orderStatus.className = "status status-processing";
          }
          if (order && polls < 180) { setTimeout(poll, 250); }
        })
        .catch(function () { setTimeout(poll, 10000); });
    };
    poll();
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
