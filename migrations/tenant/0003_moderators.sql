-- Moderators appointed by a stream's owner for that stream.
CREATE TABLE streaming_stream_moderators (
    stream_id  bigint NOT NULL REFERENCES streaming_stream (id) ON DELETE CASCADE,
    user_id    bigint NOT NULL REFERENCES accounts_user (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, user_id)
);
