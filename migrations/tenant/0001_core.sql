-- Accounts, sessions, streams, chat, stamps and reactions of one tenant.
-- Runs with search_path set to the tenant's schema only.

CREATE TABLE accounts_user (
    id                  bigserial PRIMARY KEY,
    username            text NOT NULL UNIQUE,
    password_hash       text NOT NULL,
    role                text NOT NULL DEFAULT 'viewer'
                        CHECK (role IN ('viewer', 'moderator', 'streamer', 'admin')),
    is_active           boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now()
);

-- Server-side sessions. The cookie carries a random key; only its SHA-256 is stored.
-- Anonymous sessions (user_id NULL) only carry a CSRF token for the login and signup forms.
CREATE TABLE accounts_session (
    key_hash    text PRIMARY KEY,
    user_id     bigint REFERENCES accounts_user (id) ON DELETE CASCADE,
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX accounts_session_user_idx ON accounts_session (user_id);
CREATE INDEX accounts_session_expires_idx ON accounts_session (expires_at);

CREATE TABLE streaming_stream (
    id                bigserial PRIMARY KEY,
    owner_id          bigint NOT NULL REFERENCES accounts_user (id),
    title             text NOT NULL,
    description       text NOT NULL DEFAULT '',
    video_url         text,
    status            text NOT NULL DEFAULT 'scheduled'
                      CHECK (status IN ('scheduled', 'live', 'ended')),
    slow_mode_seconds integer NOT NULL DEFAULT 0 CHECK (slow_mode_seconds >= 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    ended_at          timestamptz
);
CREATE INDEX streaming_stream_owner_idx ON streaming_stream (owner_id);

-- One chat room per stream, named "stream_{id}" as in the system this replaces.
CREATE TABLE chat_chatroom (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    stream_id  bigint NOT NULL UNIQUE REFERENCES streaming_stream (id) ON DELETE CASCADE,
    is_active  boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE chat_chatmessage (
    id           bigserial PRIMARY KEY,
    room_id      bigint NOT NULL REFERENCES chat_chatroom (id) ON DELETE CASCADE,
    user_id      bigint REFERENCES accounts_user (id) ON DELETE SET NULL,
    content      text NOT NULL,
    message_type text NOT NULL DEFAULT 'message'
                 CHECK (message_type IN ('message', 'system', 'moderation')),
    is_deleted   boolean NOT NULL DEFAULT false,
    is_pinned    boolean NOT NULL DEFAULT false,
    client_id    text CHECK (char_length(client_id) <= 64),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_msg_room_created_idx ON chat_chatmessage (room_id, created_at DESC);
CREATE INDEX chat_msg_room_id_idx ON chat_chatmessage (room_id, id DESC);

CREATE TABLE chat_chatstamp (
    id        integer PRIMARY KEY,
    name      text NOT NULL UNIQUE,
    image_url text NOT NULL
);
INSERT INTO chat_chatstamp (id, name, image_url) VALUES
    (1, ':smile:',    '/static/stamps/01_smile.svg'),
    (2, ':surprise:', '/static/stamps/02_surprise.svg'),
    (3, ':cry:',      '/static/stamps/03_cry.svg'),
    (4, ':love:',     '/static/stamps/04_love.svg'),
    (5, ':scream:',   '/static/stamps/05_scream.svg'),
    (6, ':angry:',    '/static/stamps/06_angry.svg');

CREATE TABLE streaming_streamreaction (
    id         bigserial PRIMARY KEY,
    stream_id  bigint NOT NULL,
    user_id    bigint NOT NULL,
    stamp_id   integer NOT NULL REFERENCES chat_chatstamp (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reaction_stream_created_idx ON streaming_streamreaction (stream_id, created_at DESC);
CREATE INDEX reaction_stamp_created_idx ON streaming_streamreaction (stamp_id, created_at DESC);

CREATE TABLE streaming_reaction_minute (
    stream_id bigint NOT NULL,
    stamp_id  integer NOT NULL,
    minute    timestamptz NOT NULL,
    count     bigint NOT NULL,
    PRIMARY KEY (stream_id, minute, stamp_id)
);
