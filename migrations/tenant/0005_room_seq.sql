-- A dense sequence per chat room: every stored message (visible or not) takes the
-- room's next `seq` under the room's lock, so a node that has delivered seq N
-- knows exactly which messages it still lacks (N+1, N+2, ...), whichever node
-- stored them. `chat_chatroom.last_seq` is the room's latest seq.
ALTER TABLE chat_chatroom ADD COLUMN last_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE chat_chatmessage ADD COLUMN seq bigint;

UPDATE chat_chatmessage m SET seq = n.seq
FROM (SELECT id, row_number() OVER (PARTITION BY room_id ORDER BY id) AS seq
      FROM chat_chatmessage) n
WHERE n.id = m.id;
UPDATE chat_chatroom r SET last_seq = COALESCE(
    (SELECT max(seq) FROM chat_chatmessage m WHERE m.room_id = r.id), 0);

ALTER TABLE chat_chatmessage ALTER COLUMN seq SET NOT NULL;
CREATE UNIQUE INDEX chat_msg_room_seq_idx ON chat_chatmessage (room_id, seq);
