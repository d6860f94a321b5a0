-- Planner statistics of the record index (issue 13 §4) whatever role the service connects as.
--
-- The indexer analyzes the staged rows and the versions before each merge: written moments ago, unseen by
-- autovacuum, they would otherwise be joined row by row (bench/record-index). ANALYZE needs the table's owner
-- (PostgreSQL 15 and 16 have no MAINTAIN privilege to grant; "ANALYZE", Notes), and the least-privileged
-- service role (issue 14 §3) is not: its ANALYZE only warned "skipping" and no statistics were taken. This
-- function runs the ANALYZE as its owner (the migrations' role); EXECUTE is granted to the service role by
-- `grant_service_role`, to nobody else. Its search_path is fixed, as a SECURITY DEFINER function's must be.
CREATE FUNCTION record_index_analyze() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    ANALYZE record_index_staged, record_versions;
END;
$$;
REVOKE EXECUTE ON FUNCTION record_index_analyze() FROM PUBLIC;

-- A backstop should the function not be called (an indexer that died between staging and merging):
-- autovacuum analyzes the staging table after every 1,000 rows written, whatever its size, and the versions
-- after 2 % of them changed rather than the default 10 %.
ALTER TABLE record_index_staged SET (autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 1000);
ALTER TABLE record_versions SET (autovacuum_analyze_scale_factor = 0.02);
