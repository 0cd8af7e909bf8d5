-- lead_tokens computes leads' generated niche_tokens and trigger_tokens on every insert and update.
-- As one SQL query with FROM it was not inlined: each call ran its own little executor, two per
-- lead, most of the cost of a CSV import. Now a single expression (inlined into the generated
-- columns) handles the usual list of one token, and a PL/pgSQL loop the rest. Same tokens, same
-- order as before, so stored rows stay valid.
-- depends: 1800_api_documents

CREATE FUNCTION _lead_tokens_split(list text) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE v_token text;
        v_tokens text[] := ARRAY[]::text[];
        v_at integer;
BEGIN
  FOREACH v_token IN ARRAY string_to_array(lower(coalesce(list, '')), ',') LOOP
    v_token := btrim(v_token);
    CONTINUE WHEN v_token = '' OR v_token = ANY (v_tokens);
    v_at := cardinality(v_tokens);           -- insertion sort: lists are short
    WHILE v_at > 0 AND v_tokens[v_at] > v_token LOOP
      v_at := v_at - 1;
    END LOOP;
    v_tokens := v_tokens[1:v_at] || v_token || v_tokens[v_at + 1:];
  END LOOP;
  RETURN v_tokens;
END $$;
COMMENT ON FUNCTION _lead_tokens_split(text) IS
  'lead_tokens for a list with commas: its tokens trimmed, lower-case, sorted, de-duplicated.';

CREATE OR REPLACE FUNCTION lead_tokens(list text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN strpos(list, ',') > 0 THEN _lead_tokens_split(list)
              WHEN btrim(lower(list)) <> '' THEN ARRAY[btrim(lower(list))]
              ELSE '{}'::text[] END
$$;
COMMENT ON FUNCTION lead_tokens(text) IS
  'Splits a comma-separated niche/trigger list into sorted, lower-case, de-duplicated tokens.';
