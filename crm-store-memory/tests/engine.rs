//! The outreach engine scenarios from crm-core's testkit, run on this store.

async fn fresh_store() -> crm_store_memory::MemoryStore {
    crm_store_memory::MemoryStore::new()
}

crm_core::dispatch_conformance_tests!(fresh_store);
crm_core::approval_conformance_tests!(fresh_store);
crm_core::runner_conformance_tests!(fresh_store);
crm_core::jobs_conformance_tests!(fresh_store);
crm_core::enrichment_conformance_tests!(fresh_store);
crm_core::scoring_conformance_tests!(fresh_store);
crm_core::intake_conformance_tests!(fresh_store);
