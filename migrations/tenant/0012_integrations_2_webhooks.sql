-- Webhooks: endpoints, a transactional outbox, and the deliveries log.
--
-- Events are recorded by triggers on the tables they describe, so the event
-- row commits in the same transaction as the change, whichever code path made
-- it: a committed change is never missed, and a rolled-back one never sent.
-- An event is stored once (`webhook_event`) and queued once per endpoint that
-- wants it (`webhook_outbox`); with no active endpoint nothing is written.

CREATE TABLE webhook_endpoint (
    id              bigserial PRIMARY KEY,
    url             text NOT NULL,
    secret          text NOT NULL,
    -- NULL: every event.
    events          text[],
    state           text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'disabled')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_success_at timestamptz,
    last_failure_at timestamptz,
    -- First failure since the last success (NULL while healthy).
    failing_since   timestamptz,
    disabled_at     timestamptz,
    -- The node delivering to this endpoint now, and until when (a lease, so
    -- one node at a time delivers to an endpoint, in order).
    leased_by       text,
    lease_until     timestamptz
);

CREATE TABLE webhook_event (
    seq        bigserial PRIMARY KEY,
    id         uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    type       text NOT NULL,
    stream_id  bigint,
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Events that must be recorded once whichever node builds them
    -- (`reactions.minute` of a stream and minute).
    dedup_key  text UNIQUE
);

-- Events still to deliver, per endpoint; the head of an endpoint's queue (its
-- smallest seq) is the only one that may be sent.
CREATE TABLE webhook_outbox (
    endpoint_id     bigint NOT NULL REFERENCES webhook_endpoint (id) ON DELETE CASCADE,
    event_seq       bigint NOT NULL REFERENCES webhook_event (seq) ON DELETE CASCADE,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (endpoint_id, event_seq)
);
CREATE INDEX webhook_outbox_due_idx ON webhook_outbox (next_attempt_at);

CREATE TABLE webhook_delivery (
    id          bigserial PRIMARY KEY,
    endpoint_id bigint NOT NULL REFERENCES webhook_endpoint (id) ON DELETE CASCADE,
    event_id    uuid NOT NULL,
    event_type  text NOT NULL,
    attempt     integer NOT NULL,
    status_code integer,
    error       text,
    latency_ms  integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_delivery_endpoint_idx ON webhook_delivery (endpoint_id, id DESC);

-- `2026-11-22T08:00:00.123Z`, as the server's frames write times.
CREATE FUNCTION webhook_ts(t timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path FROM CURRENT
    AS $$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') $$;

-- Records one event and queues it for every active endpoint that wants it.
-- Does nothing (and returns NULL) when no endpoint wants it, or when an event
-- with the same dedup key exists.
CREATE FUNCTION webhook_record(p_type text, p_stream bigint, p_data jsonb, p_key text DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_seq bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoint e
                   WHERE e.state = 'active' AND (e.events IS NULL OR p_type = ANY (e.events))) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_event (type, stream_id, data, dedup_key)
        VALUES (p_type, p_stream, p_data, p_key)
        ON CONFLICT (dedup_key) DO NOTHING
        RETURNING seq INTO v_seq;
    IF v_seq IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_outbox (endpoint_id, event_seq)
        SELECT e.id, v_seq FROM webhook_endpoint e
        WHERE e.state = 'active' AND (e.events IS NULL OR p_type = ANY (e.events));
    RETURN v_seq;
END $$;

-- The `<message>` frame of a stored message, as sockets get it (the insert
-- trigger below builds the same object set-based: keep the two in step).
CREATE FUNCTION webhook_message(m chat_chatmessage) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT jsonb_build_object(
        'id', m.id,
        'username', coalesce(u.username, 'system'),
        'message', m.content,
        'message_type', m.message_type,
        'timestamp', webhook_ts(m.created_at),
        'role', u.role,
        'client_id', m.client_id,
        'reply_to', CASE WHEN p.id IS NULL THEN NULL ELSE jsonb_build_object(
            'id', p.id, 'username', pu.username,
            'excerpt', CASE WHEN p.is_deleted THEN '' ELSE left(p.content, 80) END) END,
        'mentions', to_jsonb(coalesce(m.mentions, ARRAY[]::text[])),
        'edited_at', webhook_ts(m.edited_at))
    FROM (SELECT 1) one
    LEFT JOIN accounts_user u ON u.id = m.user_id
    LEFT JOIN chat_chatmessage p ON p.id = m.reply_to_id
    LEFT JOIN accounts_user pu ON pu.id = p.user_id
$$;

-- message.created: every visible message of an insert (hidden ones never; held
-- ones are inserted only when approved). Set-based, one statement per insert
-- statement: this runs inside the chat's own commit.
CREATE FUNCTION webhook_on_message_insert() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoint e WHERE e.state = 'active'
                   AND (e.events IS NULL OR 'message.created' = ANY (e.events))) THEN
        RETURN NULL;
    END IF;
    WITH ev AS (
        INSERT INTO webhook_event (type, stream_id, data)
        SELECT 'message.created', c.stream_id, jsonb_build_object(
            'id', n.id,
            'username', coalesce(u.username, 'system'),
            'message', n.content,
            'message_type', n.message_type,
            'timestamp', webhook_ts(n.created_at),
            'role', u.role,
            'client_id', n.client_id,
            'reply_to', CASE WHEN p.id IS NULL THEN NULL ELSE jsonb_build_object(
                'id', p.id, 'username', pu.username,
                'excerpt', CASE WHEN p.is_deleted THEN '' ELSE left(p.content, 80) END) END,
            'mentions', to_jsonb(coalesce(n.mentions, ARRAY[]::text[])),
            'edited_at', webhook_ts(n.edited_at))
        FROM new_rows n
        JOIN chat_chatroom c ON c.id = n.room_id
        LEFT JOIN accounts_user u ON u.id = n.user_id
        LEFT JOIN chat_chatmessage p ON p.id = n.reply_to_id
        LEFT JOIN accounts_user pu ON pu.id = p.user_id
        WHERE NOT n.is_hidden
        ORDER BY n.id
        RETURNING seq)
    INSERT INTO webhook_outbox (endpoint_id, event_seq)
    SELECT e.id, ev.seq FROM ev JOIN webhook_endpoint e
        ON e.state = 'active' AND (e.events IS NULL OR 'message.created' = ANY (e.events));
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_message_insert AFTER INSERT ON chat_chatmessage
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION webhook_on_message_insert();

-- message.edited: a visible message's text changed by its author.
CREATE FUNCTION webhook_on_message_edit() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM webhook_record('message.edited',
        (SELECT c.stream_id FROM chat_chatroom c WHERE c.id = NEW.room_id),
        webhook_message(NEW));
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_message_edit AFTER UPDATE OF edited_at ON chat_chatmessage
    FOR EACH ROW WHEN (NEW.edited_at IS DISTINCT FROM OLD.edited_at AND NOT NEW.is_hidden)
    EXECUTE FUNCTION webhook_on_message_edit();

-- message.deleted, chat.cleared and moderation.action: every moderation
-- action writes its log entry in the transaction that does it.
CREATE FUNCTION webhook_on_moderation() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_type text;
    v_data jsonb;
BEGIN
    v_type := CASE NEW.action WHEN 'delete' THEN 'message.deleted'
                              WHEN 'clear' THEN 'chat.cleared'
                              ELSE 'moderation.action' END;
    v_data := jsonb_build_object(
        'action', NEW.action,
        'moderator', (SELECT u.username FROM accounts_user u WHERE u.id = NEW.moderator_id),
        'target', (SELECT u.username FROM accounts_user u WHERE u.id = NEW.target_user_id),
        'message_id', NEW.message_id,
        'reason', NEW.reason,
        'seconds', NEW.seconds,
        'created_at', webhook_ts(NEW.created_at));
    PERFORM webhook_record(v_type, NEW.stream_id, v_data);
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_moderation AFTER INSERT ON moderation_log
    FOR EACH ROW EXECUTE FUNCTION webhook_on_moderation();

-- stream.status: a stream goes live or ends.
CREATE FUNCTION webhook_on_stream_status() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM webhook_record('stream.status', NEW.id, jsonb_build_object(
        'stream_id', NEW.id, 'status', NEW.status, 'previous', OLD.status, 'title', NEW.title));
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_stream_status AFTER UPDATE OF status ON streaming_stream
    FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status)
    EXECUTE FUNCTION webhook_on_stream_status();
