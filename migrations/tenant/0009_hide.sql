-- Hide (shadow ban): a hidden user's new messages are stored flagged and shown
-- only to that user and to moderators. Per stream, or tenant-wide when
-- stream_id is NULL.
ALTER TABLE chat_chatmessage ADD COLUMN is_hidden boolean NOT NULL DEFAULT false;

CREATE TABLE moderation_hide (
    id         bigserial PRIMARY KEY,
    stream_id  bigint REFERENCES streaming_stream (id) ON DELETE CASCADE,
    user_id    bigint NOT NULL REFERENCES accounts_user (id) ON DELETE CASCADE,
    created_by bigint REFERENCES accounts_user (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX moderation_hide_unique ON moderation_hide (COALESCE(stream_id, 0), user_id);
