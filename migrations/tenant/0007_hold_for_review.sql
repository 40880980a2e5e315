-- Hold for review: terms that hold a message instead of refusing it, and the
-- held messages themselves (kept until a moderator approves or denies them,
-- or ten minutes pass), so a restart loses none.
ALTER TABLE moderation_blockedterm ADD COLUMN mode text NOT NULL DEFAULT 'block'
    CHECK (mode IN ('block', 'hold'));

CREATE TABLE chat_heldmessage (
    id          bigserial PRIMARY KEY,
    room_id     bigint NOT NULL REFERENCES chat_chatroom (id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES accounts_user (id) ON DELETE CASCADE,
    content     text NOT NULL,
    client_id   text CHECK (char_length(client_id) <= 64),
    reason      text NOT NULL,
    state       text NOT NULL DEFAULT 'held' CHECK (state IN ('held', 'approved', 'denied')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    resolved_by bigint REFERENCES accounts_user (id) ON DELETE SET NULL,
    resolved_at timestamptz,
    message_id  bigint
);
CREATE INDEX chat_held_waiting_idx ON chat_heldmessage (room_id, id) WHERE state = 'held';
