//! Cases for [`ContactStore::find_contact_by_address`](crm_core::store::ContactStore::find_contact_by_address).

use crm_core::DynStore;
use crm_core::address::PhoneNumber;
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::model::{Channel, Contact};

use super::fixtures::{new_contact, ok, unique, unique_email};

/// Inserts a contact in `ws` with `email`, `phone`, an Instagram id and a LinkedIn URL.
async fn reachable_contact(store: &DynStore, ws: WorkspaceId, email: &str, phone: &str) -> Contact {
    let mut contact = new_contact(ws, email);
    contact.phone = Some(PhoneNumber::parse(phone).expect("valid phone"));
    contact.instagram_id = Some(unique("ig"));
    contact.linkedin_url = Some(format!("https://www.linkedin.com/in/{}", unique("ada")));
    ok(store.insert_contact(&contact).await, "insert_contact")
}

/// The contact found at `address` on `channel` in `ws`, by id.
async fn found(
    store: &DynStore,
    ws: WorkspaceId,
    channel: Channel,
    address: &str,
) -> Option<ContactId> {
    ok(
        store.find_contact_by_address(ws, channel, address).await,
        "find_contact_by_address",
    )
    .map(|c| c.id)
}

/// find_contact_by_address matches each channel's field; ManualTask none; smallest id wins.
pub async fn contact_find_by_address_per_channel(store: &DynStore) {
    let ws = WorkspaceId::new();
    let local = unique("Ada.Lovelace");
    let ada = reachable_contact(store, ws, &format!("{local}@Example.COM"), "+4915112345678").await;
    let stored = ok(store.get_contact(ws, ada.id).await, "get_contact");
    assert_eq!(stored, ada, "the contact round-trips");
    let email_lower = format!("{}@example.com", local.to_lowercase());
    let email_upper = format!("{}@EXAMPLE.com", local.to_uppercase());
    let instagram = ada.instagram_id.clone().unwrap_or_default();
    let linkedin = ada.linkedin_url.clone().unwrap_or_default();
    for (channel, address) in [
        (Channel::Email, email_lower.as_str()),
        (Channel::Email, email_upper.as_str()),
        (Channel::CalCom, email_lower.as_str()),
        (Channel::WhatsApp, "+4915112345678"),
        (Channel::WhatsApp, "+49 (151) 1234-5678"),
        (Channel::Sms, "+49 151 12345678"),
        (Channel::Instagram, instagram.as_str()),
        (Channel::LinkedIn, linkedin.as_str()),
    ] {
        assert_eq!(
            found(store, ws, channel, address).await,
            Some(ada.id),
            "find_contact_by_address({channel}, {address:?}) finds the contact"
        );
    }
    for (channel, address, what) in [
        (
            Channel::ManualTask,
            email_lower.as_str(),
            "ManualTask has no address",
        ),
        (
            Channel::ManualTask,
            "+4915112345678",
            "ManualTask has no address",
        ),
        (
            Channel::Instagram,
            email_lower.as_str(),
            "Instagram matches instagram_id only",
        ),
        (
            Channel::Email,
            instagram.as_str(),
            "Email matches the email only",
        ),
        (Channel::Sms, "+4915112345679", "another phone number"),
        (
            Channel::LinkedIn,
            "https://www.linkedin.com/in/nobody",
            "another profile",
        ),
    ] {
        assert_eq!(found(store, ws, channel, address).await, None, "{what}");
    }

    let grace = reachable_contact(store, ws, &unique_email(), "+4915112345678").await;
    let smallest = ada.id.min(grace.id);
    for channel in [Channel::WhatsApp, Channel::Sms] {
        assert_eq!(
            found(store, ws, channel, "+49 151 12345678").await,
            Some(smallest),
            "contacts sharing a phone: the smallest id is returned"
        );
    }
}

/// find_contact_by_address never returns another workspace's contact.
pub async fn contact_find_by_address_tenant_isolation(store: &DynStore) {
    let (ws, other) = (WorkspaceId::new(), WorkspaceId::new());
    let email = unique_email();
    let ada = reachable_contact(store, ws, &email, "+4917700000001").await;
    let instagram = ada.instagram_id.clone().unwrap_or_default();
    let linkedin = ada.linkedin_url.clone().unwrap_or_default();
    for (channel, address) in [
        (Channel::Email, email.as_str()),
        (Channel::WhatsApp, "+4917700000001"),
        (Channel::Instagram, instagram.as_str()),
        (Channel::LinkedIn, linkedin.as_str()),
    ] {
        assert_eq!(
            found(store, other, channel, address).await,
            None,
            "another workspace never finds the contact ({channel})"
        );
    }
    let twin = reachable_contact(store, other, &email, "+4917700000001").await;
    for (workspace, expected) in [(ws, ada.id), (other, twin.id)] {
        for channel in [Channel::Email, Channel::Sms] {
            let address = if channel == Channel::Email {
                email.as_str()
            } else {
                "+4917700000001"
            };
            assert_eq!(
                found(store, workspace, channel, address).await,
                Some(expected),
                "each workspace finds its own contact at a shared address"
            );
        }
    }
}
