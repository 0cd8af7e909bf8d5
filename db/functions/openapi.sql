-- The JSON API's response rows described from the catalogue, so the OpenAPI document
-- (web/openapi.py) cannot drift from what a handler actually sends: the rows of a function or a
-- view (as the web sends them), and the JSON documents SQL builds, each defined once as a
-- composite type (*_doc, see migration 1800) that its function fills with to_jsonb(ROW(...)::type).

CREATE OR REPLACE FUNCTION _json_schema_of_type(p_type regtype, p_in_jsonb boolean) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT CASE
    WHEN t.typcategory = 'A' THEN jsonb_build_object('type', jsonb_build_array('array', 'null'),
                                                     'items', _json_schema_of_type(t.typelem::regtype, p_in_jsonb))
    WHEN t.typtype = 'c' THEN _json_schema_of_relation(t.typrelid, true)
                                || '{"type": ["object", "null"]}'
    WHEN p_type IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype)
      THEN '{"type": ["integer", "null"]}'
    WHEN p_type IN ('real'::regtype, 'double precision'::regtype) THEN '{"type": ["number", "null"]}'
    -- numeric is exact: the web sends a row's numeric as its decimal text (Decimal); in jsonb it is a number
    WHEN p_type = 'numeric'::regtype AND p_in_jsonb THEN '{"type": ["number", "null"]}'
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
COMMENT ON FUNCTION _json_schema_of_type(regtype, boolean) IS
  'The JSON Schema of a PostgreSQL type as the web sends it: numbers (a row''s numeric as its decimal text, '
  'numeric inside jsonb (p_in_jsonb) as a number), booleans, ISO 8601 dates and times, arrays of their element '
  'type, composite types as objects of their attributes, other types as strings; null allowed.';

CREATE OR REPLACE FUNCTION _json_schema_of_relation(p_relation regclass, p_in_jsonb boolean) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
           'type', 'object',
           'properties', coalesce(jsonb_object_agg(a.attname, _json_schema_of_type(a.atttypid::regtype, p_in_jsonb)
                                                   ORDER BY a.attnum), '{}'),
           'required', coalesce(jsonb_agg(a.attname ORDER BY a.attnum), '[]'))
    FROM pg_attribute a
   WHERE a.attrelid = p_relation AND a.attnum > 0 AND NOT a.attisdropped
$$;
COMMENT ON FUNCTION _json_schema_of_relation(regclass, boolean) IS
  'The JSON Schema (an object, every column present) of a row of a view, table or composite type.';

CREATE OR REPLACE FUNCTION api_row_schema(p_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE v_relation pg_class;
        v_function regproc := to_regproc(p_name);
BEGIN
  SELECT * INTO v_relation FROM pg_class WHERE oid = to_regclass(p_name);
  IF FOUND THEN
    -- a view's rows go through psycopg; a composite type (a *_doc) is JSON built in SQL
    RETURN _json_schema_of_relation(v_relation.oid, v_relation.relkind = 'c')
           || jsonb_build_object('description', CASE WHEN v_relation.relkind = 'c'
                                                     THEN obj_description(v_relation.reltype, 'pg_type')
                                                     ELSE 'a row of the ' || p_name || ' view' END);
  END IF;
  IF v_function IS NULL THEN
    RAISE EXCEPTION 'api_row_schema: "%" is neither a function, a view nor a type', p_name USING ERRCODE = '22023';
  END IF;
  -- A function's result columns: RETURNS TABLE / OUT parameters, or the columns of the row type it returns.
  RETURN (
    WITH cols AS (
      SELECT a.name, a.type::regtype AS type, a.n
        FROM pg_proc p,
             unnest(p.proargnames, p.proallargtypes, p.proargmodes) WITH ORDINALITY AS a(name, type, mode, n)
       WHERE p.oid = v_function AND a.mode IN ('t', 'o')
      UNION ALL
      SELECT att.attname, att.atttypid::regtype, att.attnum
        FROM pg_proc p JOIN pg_type rt ON rt.oid = p.prorettype
        JOIN pg_attribute att ON att.attrelid = rt.typrelid AND att.attnum > 0 AND NOT att.attisdropped
       WHERE p.oid = v_function AND p.proallargtypes IS NULL
    )
    SELECT jsonb_build_object('type', 'object', 'description', 'a row of ' || p_name || '()',
                              'properties', coalesce(jsonb_object_agg(c.name, _json_schema_of_type(c.type, false)
                                                                      ORDER BY c.n), '{}'),
                              'required', coalesce(jsonb_agg(c.name ORDER BY c.n), '[]'))
      FROM cols c);
END $$;
COMMENT ON FUNCTION api_row_schema(text) IS
  'The JSON Schema (an object, every column present) of one row of a function''s result, of a view, or of a JSON '
  'document type (*_doc: JSON built in SQL, described field by field), read from the catalogue: the response '
  'schemas of /api/openapi.json.';
