-- sequence_definition()'s JSON carries the sequence's failover option (migration 1701).
-- depends: 1800_api_documents 1703_cold_share
ALTER TYPE sequence_definition_doc ADD ATTRIBUTE failover boolean;
