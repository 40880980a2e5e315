-- A hidden user's message is never sent to webhooks (PROTOCOL.md): deleting
-- one is not sent either (a `message.deleted` for a message receivers never
-- had would tell them about it). Other actions are as in 0012: the function is
-- restated whole, as PostgreSQL replaces a function whole and 0012 stays as it
-- was applied.
CREATE OR REPLACE FUNCTION webhook_on_moderation() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_type text;
    v_data jsonb;
BEGIN
    IF NEW.action = 'delete' AND EXISTS (
        SELECT 1 FROM chat_chatmessage m WHERE m.id = NEW.message_id AND m.is_hidden) THEN
        RETURN NULL;
    END IF;
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
