//! The shared store conformance suite, run against the memory store.
async fn fresh_store() -> crm_store_memory::MemoryStore {
    crm_store_memory::MemoryStore::new()
}
crm_testkit::store_conformance_tests!(fresh_store);
crm_testkit::access_conformance_tests!(fresh_store);
