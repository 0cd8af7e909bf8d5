-- The send queue (broadcast_messages): rendering at queue time, claim, complete, fail, stuck
-- recovery, skip rules and the wake-up NOTIFY. Pacing and caps are enforced inside the claim.

-- Rendering ---------------------------------------------------------------------------------
-- Fields are recognised first and parked as private-use characters, so spintax never sees a
-- field's braces and a value containing '|' or '{' is never parsed as spintax; then spintax
-- groups are resolved innermost first; then the values are put in.
CREATE OR REPLACE FUNCTION render_message(p_template text, p_name text, p_phone text)
RETURNS text LANGUAGE plpgsql VOLATILE PARALLEL SAFE AS $$
DECLARE
  v_text   text := p_template;
  v_group  text;
  v_pick   text[];
  v_at     integer;
BEGIN
  IF v_text IS NULL OR strpos(v_text, '{') = 0 THEN
    RETURN v_text;
  END IF;
  v_text := regexp_replace(v_text, '\{\s*name\s*\}', U&'\E000', 'gi');
  v_text := regexp_replace(v_text, '\{\s*phone\s*\}', U&'\E001', 'gi');
  LOOP
    v_group := (regexp_match(v_text, '\{[^{}]*\|[^{}]*\}'))[1];
    EXIT WHEN v_group IS NULL;
    v_pick := string_to_array(substr(v_group, 2, length(v_group) - 2), '|');
    v_at := strpos(v_text, v_group);  -- the leftmost occurrence is the regex's match
    v_text := overlay(v_text PLACING v_pick[1 + floor(random() * cardinality(v_pick))::int]
                      FROM v_at FOR length(v_group));
  END LOOP;
  RETURN replace(replace(v_text, U&'\E000', coalesce(nullif(btrim(p_name), ''), 'Customer')),
                 U&'\E001', coalesce(p_phone, ''));
END $$;
COMMENT ON FUNCTION render_message(text, text, text) IS
  'The text to store on a queued message: {name} (case-insensitive; "Customer" when the name is empty) and '
  '{phone} are filled first, then spintax {a|b|c} (nested allowed) picks one option per group at random. '
  'Field values are never read as spintax. Call it in the INSERT that queues the row.';
