-- Chat modes of a stream (stamps_only, established_minutes, unique_chat,
-- hold_links, shield) and what the shield saved, as one JSON document.
ALTER TABLE streaming_stream ADD COLUMN modes jsonb NOT NULL DEFAULT '{}';
