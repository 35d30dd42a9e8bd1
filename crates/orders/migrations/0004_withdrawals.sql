-- Withdrawals (issue 15): a ticket its seller took off sale takes no new
-- order, and its unpaid orders are cancelled when the replica learns of it
-- (`ticket.updated` with `withdrawn`). 1 = withdrawn.
ALTER TABLE tickets ADD COLUMN withdrawn BIGINT NOT NULL DEFAULT 0;
