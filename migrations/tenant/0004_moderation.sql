-- Moderation: the log of every action, bans and timeouts (per stream, or
-- tenant-wide when stream_id is NULL), and blocked terms (likewise).
CREATE TABLE moderation_log (
    id             bigserial PRIMARY KEY,
    stream_id      bigint NOT NULL REFERENCES streaming_stream (id) ON DELETE CASCADE,
    moderator_id   bigint REFERENCES accounts_user (id) ON DELETE SET NULL,
    action         text NOT NULL,
    target_user_id bigint REFERENCES accounts_user (id) ON DELETE SET NULL,
    message_id     bigint,
    reason         text,
    seconds        integer,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX moderation_log_stream_idx ON moderation_log (stream_id, id DESC);

CREATE TABLE moderation_ban (
    id         bigserial PRIMARY KEY,
    stream_id  bigint REFERENCES streaming_stream (id) ON DELETE CASCADE,
    user_id    bigint NOT NULL REFERENCES accounts_user (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('ban', 'timeout')),
    until      timestamptz,
    reason     text,
    created_by bigint REFERENCES accounts_user (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX moderation_ban_user_idx ON moderation_ban (user_id);
CREATE INDEX moderation_ban_stream_idx ON moderation_ban (stream_id);

CREATE TABLE moderation_blockedterm (
    id         bigserial PRIMARY KEY,
    stream_id  bigint REFERENCES streaming_stream (id) ON DELETE CASCADE,
    term       text NOT NULL CHECK (char_length(term) BETWEEN 1 AND 100),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX moderation_blockedterm_unique ON moderation_blockedterm (COALESCE(stream_id, 0), term);

CREATE INDEX chat_msg_pinned_idx ON chat_chatmessage (room_id) WHERE is_pinned;
