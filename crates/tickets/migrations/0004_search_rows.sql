-- Search rows only where a search can use them (issue 22): none for
-- tickets that left sale for good (withdrawn or sold), none longer than
-- the 20 characters of a word the index keeps (`domain::MAX_PREFIX_CHARS`).
-- `length` counts characters on both databases.
DELETE FROM title_prefixes
    WHERE ticket_id IN (
        SELECT id FROM tickets WHERE withdrawn_at IS NOT NULL OR sold_at IS NOT NULL
    );
DELETE FROM title_prefixes WHERE length(prefix) > 20;
