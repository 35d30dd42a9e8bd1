-- 3-D Secure (DECISIONS.md, "Money"): an attempt whose PaymentIntent waits
-- for the buyer's authentication stays pending and keeps what the buyer's
-- page needs to finish it; charge_id holds the intent's id from then on.
ALTER TABLE payment_attempts ADD COLUMN client_secret TEXT;
ALTER TABLE payment_attempts ADD COLUMN redirect_url TEXT;
