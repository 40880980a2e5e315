-- Idempotent sends: a (room, user, client_id) seen within 10 minutes is looked up
-- under the room's advisory lock before a batch inserts; this index serves it.
CREATE INDEX chat_msg_client_id_idx ON chat_chatmessage (room_id, client_id)
    WHERE client_id IS NOT NULL;
