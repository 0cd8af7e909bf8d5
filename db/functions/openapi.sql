-- The JSON API's response rows described from the functions that return them, so the OpenAPI
-- document (web/openapi.py) cannot drift from what a handler actually sends.

CREATE OR REPLACE FUNCTION _json_schema_of_type(p_type regtype) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT CASE
    WHEN t.typcategory = 'A' THEN jsonb_build_object('type', jsonb_build_array('array', 'null'),
                                                     'items', _json_schema_of_type(t.typelem::regtype))
    WHEN p_type IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype)
      THEN '{"type": ["integer", "null"]}'
    WHEN p_type IN ('real'::regtype, 'double precision'::regtype) THEN '{"type": ["number", "null"]}'
    -- numeric is exact: the web sends it as its decimal text (Decimal), not a rounded float
    WHEN p_type = 'numeric'::regtype THEN '{"type": ["string", "null"], "format": "decimal"}'
    WHEN p_type = 'boolean'::regtype THEN '{"type": ["boolean", "null"]}'
    WHEN p_type = 'timestamptz'::regtype THEN '{"type": ["string", "null"], "format": "date-time"}'
    WHEN p_type = 'date'::regtype THEN '{"type": ["string", "null"], "format": "date"}'
    WHEN p_type = 'time'::regtype THEN '{"type": ["string", "null"], "format": "time"}'
    WHEN p_type = 'uuid'::regtype THEN '{"type": ["string", "null"], "format": "uuid"}'
    WHEN p_type IN ('json'::regtype, 'jsonb'::regtype) THEN '{}'
    ELSE '{"type": ["string", "null"]}'
  END::jsonb
    FROM pg_type t WHERE t.oid = p_type
$$;
COMMENT ON FUNCTION _json_schema_of_type(regtype) IS
  'The JSON Schema of a PostgreSQL type as the web sends it: numbers (numeric as its decimal text), booleans, '
  'ISO 8601 dates and times, '
  'arrays of their element type, other types as strings; null allowed (a column may be null).';

CREATE OR REPLACE FUNCTION api_row_schema(p_function regproc) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  -- A function's result columns: RETURNS TABLE / OUT parameters, or the columns of the row type it returns.
  WITH cols AS (
    SELECT a.name, a.type::regtype AS type, a.n
      FROM pg_proc p,
           unnest(p.proargnames, p.proallargtypes, p.proargmodes) WITH ORDINALITY AS a(name, type, mode, n)
     WHERE p.oid = p_function AND a.mode IN ('t', 'o')
    UNION ALL
    SELECT att.attname, att.atttypid::regtype, att.attnum
      FROM pg_proc p JOIN pg_type rt ON rt.oid = p.prorettype
      JOIN pg_attribute att ON att.attrelid = rt.typrelid AND att.attnum > 0 AND NOT att.attisdropped
     WHERE p.oid = p_function AND p.proallargtypes IS NULL
  )
  SELECT jsonb_build_object('type', 'object', 'description', 'a row of ' || p_function::text || '()',
                            'properties', coalesce(jsonb_object_agg(c.name, _json_schema_of_type(c.type) ORDER BY c.n), '{}'),
                            'required', coalesce(jsonb_agg(c.name ORDER BY c.n), '[]'))
    FROM cols c
$$;
COMMENT ON FUNCTION api_row_schema(regproc) IS
  'The JSON Schema (an object, every column present) of one row a function returns, read from the catalogue: '
  'the response schemas of /api/openapi.json.';
