-- Chat v2: replies and mentions.
-- `reply_to_id` is the message replied to (a message of the same room, checked
-- by the room before the insert); the excerpt is read from it, so history
-- shows the replied message's latest text. `mentions` holds the usernames the
-- message names with `@username` (as spelled in accounts_user), NULL for none.
ALTER TABLE chat_chatmessage
    ADD COLUMN reply_to_id bigint REFERENCES chat_chatmessage (id) ON DELETE SET NULL,
    ADD COLUMN mentions text[];
-- The foreign key's other side: without it, removing messages (a stream's
-- room deleted) would scan the table once per removed message. Partial: most
-- messages reply to nothing.
CREATE INDEX chat_msg_reply_to_idx ON chat_chatmessage (reply_to_id)
    WHERE reply_to_id IS NOT NULL;
