//! Cases for [`ContactStore`] and [`AccountStore`].

use crm_core::DynStore;
use crm_core::address::{Domain, EmailAddress, PhoneNumber};
use crm_core::error::{StoreError, StoreErrorKind as Kind};
use crm_core::ids::{AccountId, ContactId, UserId, WorkspaceId};

use super::fixtures::{
    account, assert_pagination, at, base, contact, expect_err, new_account, new_contact, ok,
    unique_domain, unique_email,
};

fn email(s: &str) -> EmailAddress {
    EmailAddress::parse(s).expect("valid email")
}

/// Insert, get and find-by-email return exactly the inserted contact; unknown ids are NotFound.
pub async fn contact_round_trip(store: &DynStore) {
    let ws = WorkspaceId::new();
    let acme = account(store, ws).await;
    let mut contact = new_contact(ws, &unique_email());
    contact.phone = Some(PhoneNumber::parse("+4915112345678").expect("phone"));
    contact.title = Some("CTO".into());
    contact.account_id = Some(acme.id);
    contact.linkedin_url = Some("https://www.linkedin.com/in/ada".into());
    contact.instagram_id = Some("17841400000000000".into());
    contact
        .custom_fields
        .insert("engine".into(), "analytical".into());
    contact.owner_id = Some(UserId::new());

    let stored = ok(store.insert_contact(&contact).await, "insert_contact");
    assert_eq!(
        stored, contact,
        "insert_contact returns the row as stored, equal to the input"
    );
    let got = ok(store.get_contact(ws, contact.id).await, "get_contact");
    assert_eq!(got, contact, "get_contact returns every field as inserted");

    let address = contact
        .email
        .as_ref()
        .expect("email")
        .as_str()
        .to_uppercase();
    let found = ok(
        store.find_contact_by_email(ws, &email(&address)).await,
        "find",
    );
    assert_eq!(
        found,
        Some(contact),
        "find_contact_by_email compares case-insensitively"
    );
    let none = ok(
        store
            .find_contact_by_email(ws, &email(&unique_email()))
            .await,
        "find",
    );
    assert_eq!(
        none, None,
        "find_contact_by_email of an unused address is None"
    );
    expect_err(
        store.get_contact(ws, ContactId::new()).await,
        Kind::NotFound,
        "get_contact of an unknown id",
    );
}

/// insert_contact rejects version != 1 and rows failing `Contact::validate` with Invalid.
pub async fn contact_insert_validates(store: &DynStore) {
    let ws = WorkspaceId::new();
    for version in [0, 2] {
        let mut contact = new_contact(ws, &unique_email());
        contact.version = version;
        expect_err(
            store.insert_contact(&contact).await,
            Kind::Invalid,
            &format!("insert_contact with version {version} (MUST be 1)"),
        );
    }
    let mut anonymous = new_contact(ws, &unique_email());
    anonymous.first_name = " ".into();
    anonymous.last_name = String::new();
    anonymous.email = None;
    expect_err(
        store.insert_contact(&anonymous).await,
        Kind::Invalid,
        "insert_contact of a contact with neither name nor address",
    );
    let mut blank_field = new_contact(ws, &unique_email());
    blank_field.custom_fields.insert("  ".into(), "x".into());
    expect_err(
        store.insert_contact(&blank_field).await,
        Kind::Invalid,
        "insert_contact with a blank custom field name",
    );
    let rows = ok(
        store
            .list_contacts(ws, crm_core::store::Page::first(10))
            .await,
        "list",
    );
    assert!(rows.is_empty(), "rejected inserts store nothing");
}

/// A reused email (case-insensitively) or id is Conflict; another workspace may reuse both.
pub async fn contact_insert_conflicts(store: &DynStore) {
    let ws = WorkspaceId::new();
    let first = contact(store, ws).await;
    let address = first.email.as_ref().expect("email").as_str().to_uppercase();
    expect_err(
        store.insert_contact(&new_contact(ws, &address)).await,
        Kind::Conflict,
        "insert_contact with another contact's email in other case",
    );
    let mut same_id = new_contact(ws, &unique_email());
    same_id.id = first.id;
    expect_err(
        store.insert_contact(&same_id).await,
        Kind::Conflict,
        "insert_contact with a reused id",
    );
    let other = ok(
        store
            .insert_contact(&new_contact(WorkspaceId::new(), &address))
            .await,
        "insert_contact in another workspace",
    );
    assert_eq!(
        other.email,
        Some(email(&address)),
        "emails are unique per workspace only"
    );
    let got = ok(store.get_contact(ws, first.id).await, "get_contact");
    assert_eq!(
        got, first,
        "a rejected insert leaves the existing row unchanged"
    );
}

/// A contact's account must exist in the same workspace, else InvalidReference.
pub async fn contact_account_must_exist_in_workspace(store: &DynStore) {
    let ws = WorkspaceId::new();
    let foreign = account(store, WorkspaceId::new()).await;
    for (account_id, what) in [
        (foreign.id, "another workspace's"),
        (AccountId::new(), "an unknown"),
    ] {
        let mut contact = new_contact(ws, &unique_email());
        contact.account_id = Some(account_id);
        expect_err(
            store.insert_contact(&contact).await,
            Kind::InvalidReference,
            &format!("insert_contact referencing {what} account"),
        );
    }
    let own = account(store, ws).await;
    let mut contact = new_contact(ws, &unique_email());
    contact.account_id = Some(own.id);
    ok(
        store.insert_contact(&contact).await,
        "insert_contact with an own account",
    );
}

/// update_contact is compare-and-set: version + 1, created_at kept, stale version refused.
pub async fn contact_update_compare_and_set(store: &DynStore) {
    let ws = WorkspaceId::new();
    let original = contact(store, ws).await;
    let mut change = original.clone();
    change.title = Some("Chief Analyst".into());
    change.updated_at = at(5);
    change.created_at = at(-100);
    let updated = ok(store.update_contact(&change).await, "update_contact");
    let mut expected = change.clone();
    expected.version = 2;
    expected.created_at = original.created_at;
    assert_eq!(
        updated, expected,
        "update_contact stores every field, version + 1, keeps created_at"
    );
    let got = ok(store.get_contact(ws, original.id).await, "get_contact");
    assert_eq!(got, expected, "get_contact sees the update");

    for stale in [1, 3] {
        let mut write = updated.clone();
        write.version = stale;
        write.title = Some("stale".into());
        let err = expect_err(
            store.update_contact(&write).await,
            Kind::VersionConflict,
            &format!("update_contact with version {stale} while 2 is stored"),
        );
        if let StoreError::VersionConflict { actual, .. } = err {
            assert_eq!(actual, 2, "VersionConflict reports the stored version");
        }
    }
    let got = ok(store.get_contact(ws, original.id).await, "get_contact");
    assert_eq!(got, expected, "a refused update changes nothing");
    let mut ghost = new_contact(ws, &unique_email());
    ghost.id = ContactId::new();
    expect_err(
        store.update_contact(&ghost).await,
        Kind::NotFound,
        "update_contact of an unknown id",
    );
}

/// update_contact applies the insert rules: validation, email uniqueness, account reference.
pub async fn contact_update_keeps_insert_rules(store: &DynStore) {
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let grace = contact(store, ws).await;
    let taken = ada.email.as_ref().expect("email").as_str().to_uppercase();

    let mut steal = grace.clone();
    steal.email = Some(email(&taken));
    expect_err(
        store.update_contact(&steal).await,
        Kind::Conflict,
        "update_contact to another contact's email",
    );
    let mut foreign = grace.clone();
    foreign.account_id = Some(account(store, WorkspaceId::new()).await.id);
    expect_err(
        store.update_contact(&foreign).await,
        Kind::InvalidReference,
        "update_contact to another workspace's account",
    );
    let mut blank = grace.clone();
    blank.first_name.clear();
    blank.last_name.clear();
    blank.email = None;
    expect_err(
        store.update_contact(&blank).await,
        Kind::Invalid,
        "update_contact failing validation",
    );
    assert_eq!(
        ok(store.get_contact(ws, grace.id).await, "get"),
        grace,
        "refused updates change nothing"
    );

    let mut recase = ada.clone();
    recase.email = Some(email(&taken));
    let updated = ok(
        store.update_contact(&recase).await,
        "update_contact of its own email's case",
    );
    assert_eq!(
        updated.email,
        Some(email(&taken)),
        "a contact's own email does not conflict with itself"
    );
}

/// list_contacts pages by ascending id with `after` and `limit` (1 to 1000).
pub async fn contact_list_pagination(store: &DynStore) {
    let ws = WorkspaceId::new();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(contact(store, ws).await.id);
    }
    contact(store, WorkspaceId::new()).await;
    assert_pagination(
        "list_contacts",
        ids,
        |c: &crm_core::model::Contact| c.id,
        |page| store.list_contacts(ws, page),
    )
    .await;
}

/// Another workspace can neither get, find, list nor update a contact.
pub async fn contact_tenant_isolation(store: &DynStore) {
    let ws = WorkspaceId::new();
    let other = WorkspaceId::new();
    let contact = contact(store, ws).await;
    let address = contact.email.clone().expect("email");
    expect_err(
        store.get_contact(other, contact.id).await,
        Kind::NotFound,
        "get_contact from another workspace",
    );
    let found = ok(store.find_contact_by_email(other, &address).await, "find");
    assert_eq!(
        found, None,
        "find_contact_by_email never returns another workspace's contact"
    );
    let listed = ok(
        store
            .list_contacts(other, crm_core::store::Page::first(10))
            .await,
        "list",
    );
    assert!(
        listed.is_empty(),
        "list_contacts never returns another workspace's rows"
    );
    let mut hijack = contact.clone();
    hijack.workspace_id = other;
    hijack.title = Some("hijacked".into());
    expect_err(
        store.update_contact(&hijack).await,
        Kind::NotFound,
        "update_contact from another workspace",
    );
    assert_eq!(
        ok(store.get_contact(ws, contact.id).await, "get"),
        contact,
        "the row is unchanged"
    );
}

/// Insert, get and find-by-domain return exactly the inserted account.
pub async fn account_round_trip(store: &DynStore) {
    let ws = WorkspaceId::new();
    let domain = unique_domain();
    let mut account = new_account(ws, &format!("https://www.{domain}/about"));
    account.owner_id = Some(UserId::new());
    let stored = ok(store.insert_account(&account).await, "insert_account");
    assert_eq!(stored, account, "insert_account returns the row as stored");
    assert_eq!(
        ok(store.get_account(ws, account.id).await, "get"),
        account,
        "get_account round trip"
    );
    let by_domain = Domain::parse(&domain.to_uppercase()).expect("domain");
    let found = ok(store.find_account_by_domain(ws, &by_domain).await, "find");
    assert_eq!(
        found,
        Some(account),
        "find_account_by_domain finds the account"
    );
    let other = Domain::parse(&unique_domain()).expect("domain");
    assert_eq!(
        ok(store.find_account_by_domain(ws, &other).await, "find"),
        None,
        "unused domain is None"
    );
    expect_err(
        store.get_account(ws, AccountId::new()).await,
        Kind::NotFound,
        "get_account of an unknown id",
    );
}

/// insert_account: version 1 and a name required (Invalid); reused domain or id is Conflict.
pub async fn account_insert_rules(store: &DynStore) {
    let ws = WorkspaceId::new();
    let mut v2 = new_account(ws, &unique_domain());
    v2.version = 2;
    expect_err(
        store.insert_account(&v2).await,
        Kind::Invalid,
        "insert_account with version 2",
    );
    let mut blank = new_account(ws, &unique_domain());
    blank.name = "  ".into();
    expect_err(
        store.insert_account(&blank).await,
        Kind::Invalid,
        "insert_account with a blank name",
    );

    let first = account(store, ws).await;
    let domain = first.domain.clone().expect("domain");
    expect_err(
        store
            .insert_account(&new_account(ws, domain.as_str()))
            .await,
        Kind::Conflict,
        "insert_account with another account's domain",
    );
    let mut same_id = new_account(ws, &unique_domain());
    same_id.id = first.id;
    expect_err(
        store.insert_account(&same_id).await,
        Kind::Conflict,
        "insert_account with a reused id",
    );
    ok(
        store
            .insert_account(&new_account(WorkspaceId::new(), domain.as_str()))
            .await,
        "domains are unique per workspace only",
    );
    for _ in 0..2 {
        let mut no_domain = new_account(ws, &unique_domain());
        no_domain.domain = None;
        ok(
            store.insert_account(&no_domain).await,
            "accounts without a domain never conflict",
        );
    }
}

/// update_account is compare-and-set and keeps the domain uniqueness and name rules.
pub async fn account_update_compare_and_set(store: &DynStore) {
    let ws = WorkspaceId::new();
    let original = account(store, ws).await;
    let other = account(store, ws).await;
    let mut change = original.clone();
    change.name = "Acme Holdings".into();
    change.employee_count = Some(4200);
    change.updated_at = at(1);
    change.created_at = at(-60);
    let updated = ok(store.update_account(&change).await, "update_account");
    let mut expected = change.clone();
    expected.version = 2;
    expected.created_at = base();
    assert_eq!(
        updated, expected,
        "update_account stores every field, version + 1, keeps created_at"
    );
    expect_err(
        store.update_account(&change).await,
        Kind::VersionConflict,
        "update_account with a stale version",
    );

    let mut steal = updated.clone();
    steal.domain = other.domain.clone();
    expect_err(
        store.update_account(&steal).await,
        Kind::Conflict,
        "update_account to another account's domain",
    );
    let mut blank = updated.clone();
    blank.name = " ".into();
    expect_err(
        store.update_account(&blank).await,
        Kind::Invalid,
        "update_account with a blank name",
    );
    assert_eq!(
        ok(store.get_account(ws, original.id).await, "get"),
        expected,
        "refused updates change nothing"
    );
}

/// list_accounts pages by id; another workspace can neither read, find, list nor update.
pub async fn account_list_and_tenant_isolation(store: &DynStore) {
    let ws = WorkspaceId::new();
    let other = WorkspaceId::new();
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(account(store, ws).await.id);
    }
    assert_pagination(
        "list_accounts",
        ids.clone(),
        |a: &crm_core::model::Account| a.id,
        |page| store.list_accounts(ws, page),
    )
    .await;
    let acme = ok(store.get_account(ws, ids[0]).await, "get_account");
    expect_err(
        store.get_account(other, acme.id).await,
        Kind::NotFound,
        "get_account from another workspace",
    );
    let domain = acme.domain.clone().expect("domain");
    assert_eq!(
        ok(store.find_account_by_domain(other, &domain).await, "find"),
        None,
        "find_account_by_domain never returns another workspace's account"
    );
    let listed = ok(
        store
            .list_accounts(other, crm_core::store::Page::first(10))
            .await,
        "list",
    );
    assert!(
        listed.is_empty(),
        "list_accounts never returns another workspace's rows"
    );
    let mut hijack = acme.clone();
    hijack.workspace_id = other;
    expect_err(
        store.update_account(&hijack).await,
        Kind::NotFound,
        "update_account from another workspace",
    );
}
