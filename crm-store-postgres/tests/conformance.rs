//! The shared store conformance suite, run against a real PostgreSQL.
async fn fresh_store() -> crm_store_postgres::PostgresStore {
    crm_store_postgres::testing::fresh_store().await
}
crm_testkit::store_conformance_tests!(fresh_store);
crm_testkit::access_conformance_tests!(fresh_store);
