-- A held message keeps what the room resolved before holding it: the message
-- it replies to, the users it mentions, and whether its author was hidden.
-- Approval stores it with them, so an approved message is the message the
-- author sent (a hidden author's stays hidden).
ALTER TABLE chat_heldmessage
    ADD COLUMN reply_to_id bigint REFERENCES chat_chatmessage (id) ON DELETE SET NULL,
    ADD COLUMN mentions    text[] NOT NULL DEFAULT '{}',
    ADD COLUMN is_hidden   boolean NOT NULL DEFAULT false;
-- A chat message deleted for good (its room's stream removed) sets the
-- reference to NULL: found by index, not by scanning the held table.
CREATE INDEX chat_held_reply_to_idx ON chat_heldmessage (reply_to_id) WHERE reply_to_id IS NOT NULL;
