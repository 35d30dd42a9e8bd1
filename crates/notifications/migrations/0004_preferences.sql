-- Which kinds of e-mail each user turned off (issue 26).

-- notification_opt_outs: one row per user and optional kind they turned
-- off, from the preferences page or an unsubscribe link; no row means on
-- (every kind is on by default). Essential kinds never have a row. The
-- sender reads it when a mail is due, so a turned-off kind stops mail
-- already decided, such as a reminder scheduled days ahead.
CREATE TABLE notification_opt_outs (
    user_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    since      BIGINT NOT NULL,
    PRIMARY KEY (user_id, kind)
);
