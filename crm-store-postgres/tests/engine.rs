//! The outreach engine scenarios from crm-core's testkit, run on this store.

async fn fresh_store() -> crm_store_postgres::PostgresStore {
    crm_store_postgres::testing::fresh_store().await
}

crm_testkit::dispatch_conformance_tests!(fresh_store);
crm_testkit::approval_conformance_tests!(fresh_store);
crm_testkit::runner_conformance_tests!(fresh_store);
crm_testkit::send_rule_conformance_tests!(fresh_store);
crm_testkit::jobs_conformance_tests!(fresh_store);
crm_testkit::enrichment_conformance_tests!(fresh_store);
crm_testkit::scoring_conformance_tests!(fresh_store);
crm_testkit::intake_conformance_tests!(fresh_store);
crm_testkit::inbound_conformance_tests!(fresh_store);
crm_testkit::engine_conformance_tests!(fresh_store);
