-- Chat v2: search. `search_text` is the message folded for search by the
-- writer (store::search::fold: lower case, full-width ASCII as ASCII, katakana
-- as hiragana, the look-alike digits and signs of blocked terms as letters,
-- zero-width and bidirectional controls removed). It is indexed by its
-- bigrams (every pair of adjacent characters without white space), so any
-- substring of 2 or more characters — Japanese has no spaces — is found
-- through the index: a query's bigrams must all be present (GIN), then
-- `LIKE` checks the substring itself.
ALTER TABLE chat_chatmessage ADD COLUMN search_text text;

CREATE FUNCTION chat_bigrams(t text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT b), '{}')
    FROM (SELECT substr(t, i, 2) AS b FROM generate_series(1, char_length(t) - 1) AS i) s
    WHERE position(' ' IN b) = 0 AND position(E'\n' IN b) = 0
$$;

-- The same folding in SQL, for rows stored before this migration (and for
-- loading test data); new rows are folded by the writer.
CREATE FUNCTION chat_fold(t text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT translate(lower(regexp_replace(t, '[\u200B-\u200F\u202A-\u202E\u2060-\u2069\uFEFF]', '', 'g')),
        'ァアィイゥウェエォオカガキギクグケゲコゴサザシジスズセゼソゾタダチヂッツヅテデトドナニヌネノハバパヒビピフブプヘベペホボポマミムメモャヤュユョヨラリルレロヮワヰヱヲンヴヵヶ！＂＃＄％＆＇（）＊＋，－．／０１２３４５６７８９：；＜＝＞？＠ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺ［＼］＾＿｀ａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐｑｒｓｔｕｖｗｘｙｚ｛｜｝～013457@$',
        'ぁあぃいぅうぇえぉおかがきぎくぐけげこごさざしじすずせぜそぞただちぢっつづてでとどなにぬねのはばぱひびぴふぶぷへべぺほぼぽまみむめもゃやゅゆょよらりるれろゎわゐゑをんゔゕゖ!"#s%&''()*+,-./oi2eas6t89:;<=>?aabcdefghijklmnopqrstuvwxyz[\]^_`abcdefghijklmnopqrstuvwxyz{|}~oieastas')
$$;

UPDATE chat_chatmessage SET search_text = chat_fold(content);

CREATE INDEX chat_msg_search_idx ON chat_chatmessage USING gin (chat_bigrams(search_text));
-- Searches by author (per stream and tenant-wide).
CREATE INDEX chat_msg_user_idx ON chat_chatmessage (user_id, id DESC);
