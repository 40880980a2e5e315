-- Chat v2: edits. `edited_at` is the time of the latest edit (NULL if never
-- edited); every earlier text of an edited message is kept, for moderators, in
-- chat_message_version with the time it was set and the time it was replaced.
ALTER TABLE chat_chatmessage ADD COLUMN edited_at timestamptz;

CREATE TABLE chat_message_version (
    id          bigserial PRIMARY KEY,
    message_id  bigint NOT NULL REFERENCES chat_chatmessage (id) ON DELETE CASCADE,
    content     text NOT NULL,
    mentions    text[],
    set_at      timestamptz NOT NULL,
    replaced_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_message_version_msg_idx ON chat_message_version (message_id, id);
