//! Accounts, their balances and margins, and balance events.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{example_id, Currency, Money, UnixNanos};
use crate::ident::Ident;

/// How many balances, and how many margins, an [`Account`] or
/// [`AccountEvent`] holds. The capacity is fixed so that the types never
/// allocate; an engine with more currencies per account keeps the rest in
/// its own [`crate::Entity`] type.
pub const MAX_BALANCES: usize = 4;

/// Cash or margin account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AccountKind {
    /// Cash account.
    Cash,
    /// Margin account.
    Margin,
}

/// One currency's balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AccountBalance {
    /// The currency of all three amounts.
    #[serde(rename = "c", alias = "currency")]
    pub currency: Currency,
    /// Total.
    #[serde(rename = "t", alias = "total")]
    pub total: Money,
    /// Locked by open orders.
    #[serde(rename = "l", alias = "locked")]
    pub locked: Money,
    /// Free to use.
    #[serde(rename = "f", alias = "free")]
    pub free: Money,
}

impl AccountBalance {
    /// A balance of `total` with `locked` of it in use; `free` is the rest.
    /// `None` if the currencies differ or on overflow.
    pub fn new(total: Money, locked: Money) -> Option<AccountBalance> {
        let free = total.checked_sub(locked)?;
        Some(AccountBalance { currency: total.currency, total, locked, free })
    }
}

/// One margin requirement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MarginBalance {
    /// The instrument, or none for account-wide margin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "i", alias = "instrument_id")]
    pub instrument_id: Option<Ident>,
    /// Initial margin.
    #[serde(rename = "im", alias = "initial")]
    pub initial: Money,
    /// Maintenance margin.
    #[serde(rename = "mm", alias = "maintenance")]
    pub maintenance: Money,
}

/// An account (or account event) already holds [`MAX_BALANCES`] entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an account holds at most {MAX_BALANCES} balances and {MAX_BALANCES} margins")]
pub struct CapacityError;

/// An account's latest state (`accounts:{id}`).
///
/// Holds at most [`MAX_BALANCES`] balances and [`MAX_BALANCES`] margins, in
/// fixed slots (`None` is an empty slot). They are serialized as a sequence
/// up to the last used slot; decoding a longer one is an error.
///
/// # Examples
///
/// ```
/// use tradecache::model::{Account, AccountBalance, Currency, Money};
///
/// let mut acc = Account::example("BINANCE-001");
/// assert_eq!(acc.balance(Currency::USDT).unwrap().free, Money::new(10_000_000, 2, Currency::USDT));
/// let btc = AccountBalance::new(Money::new(150, 2, Currency::BTC), Money::new(50, 2, Currency::BTC)).unwrap();
/// acc.set_balance(btc).unwrap();
/// assert_eq!(acc.balances().count(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// `BINANCE-001`.
    pub id: Ident,
    /// Cash or margin.
    #[serde(rename = "k", alias = "kind")]
    pub kind: AccountKind,
    /// Base currency, if single-currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "bc", alias = "base_currency")]
    pub base_currency: Option<Currency>,
    /// Balances, one per currency (at most [`MAX_BALANCES`]).
    #[serde(default, with = "slots")]
    #[serde(rename = "b", alias = "balances")]
    pub balances: [Option<AccountBalance>; MAX_BALANCES],
    /// Margins (at most [`MAX_BALANCES`]).
    #[serde(default, with = "slots")]
    #[serde(rename = "m", alias = "margins")]
    pub margins: [Option<MarginBalance>; MAX_BALANCES],
    /// Last update.
    #[serde(rename = "te", alias = "ts_event")]
    pub ts_event: UnixNanos,
}

impl Account {
    /// A margin account with 100,000.00 USDT, for examples, tests and
    /// benches. An invalid id is replaced by `invalid-id`.
    pub fn example(account_id: &str) -> Account {
        let m = |raw| Money::new(raw, 2, Currency::USDT);
        Account {
            id: example_id(account_id),
            kind: AccountKind::Margin,
            base_currency: Some(Currency::USDT),
            balances: [AccountBalance::new(m(10_000_000), m(0)), None, None, None],
            margins: [None, None, None, None],
            ts_event: UnixNanos(1_700_000_000_000_000_000),
        }
    }

    /// The balance in `currency`, if any.
    pub fn balance(&self, currency: Currency) -> Option<&AccountBalance> {
        self.balances.iter().flatten().find(|b| b.currency == currency)
    }

    /// The balances present.
    pub fn balances(&self) -> impl Iterator<Item = &AccountBalance> {
        self.balances.iter().flatten()
    }

    /// The margins present.
    pub fn margins(&self) -> impl Iterator<Item = &MarginBalance> {
        self.margins.iter().flatten()
    }

    /// Replaces the balance in the same currency, or takes a free slot.
    ///
    /// # Errors
    ///
    /// [`CapacityError`] when the currency is new and all
    /// [`MAX_BALANCES`] slots are used.
    pub fn set_balance(&mut self, balance: AccountBalance) -> Result<(), CapacityError> {
        set_slot(&mut self.balances, |b| b.currency == balance.currency, balance)
    }

    /// Replaces the margin for the same instrument (or the account-wide
    /// one), or takes a free slot.
    ///
    /// # Errors
    ///
    /// [`CapacityError`] when the margin is new and all
    /// [`MAX_BALANCES`] slots are used.
    pub fn set_margin(&mut self, margin: MarginBalance) -> Result<(), CapacityError> {
        let id = margin.instrument_id.clone();
        set_slot(&mut self.margins, |m| m.instrument_id == id, margin)
    }

    /// Applies a balance event: the account takes its balances, margins and
    /// time. Events for another account are ignored.
    pub fn apply(&mut self, event: &AccountEvent) {
        if event.account_id != self.id {
            return;
        }
        self.balances = event.balances;
        self.margins = event.margins.clone();
        self.ts_event = event.ts_event;
    }
}

/// Puts `v` in the slot whose entry is `same`, or else in a free one.
fn set_slot<T>(slots: &mut [Option<T>], same: impl Fn(&T) -> bool, v: T) -> Result<(), CapacityError> {
    let slot = match slots.iter().position(|s| s.as_ref().is_some_and(&same)) {
        Some(i) => i,
        None => slots.iter().position(Option::is_none).ok_or(CapacityError)?,
    };
    slots[slot] = Some(v);
    Ok(())
}

/// A balance/margin update appended to `accounts:{id}:events` (when
/// `persist_account_events` is on). Same capacity as [`Account`].
///
/// # Examples
///
/// ```
/// use tradecache::model::{Account, AccountEvent, UnixNanos};
///
/// let mut acc = Account::example("BINANCE-001");
/// let mut ev = AccountEvent::snapshot_of(&acc, 1, UnixNanos(5));
/// ev.balances[0].as_mut().unwrap().free.raw -= 100;
/// acc.apply(&ev);
/// assert_eq!(acc.balances[0].unwrap().free.raw, 9_999_900);
/// assert_eq!(acc.ts_event, UnixNanos(5));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountEvent {
    /// Unique within the account's log.
    #[serde(rename = "e", alias = "event_id")]
    pub event_id: u64,
    /// The account.
    #[serde(rename = "a", alias = "account_id")]
    pub account_id: Ident,
    /// Balances after the event.
    #[serde(default, with = "slots")]
    #[serde(rename = "b", alias = "balances")]
    pub balances: [Option<AccountBalance>; MAX_BALANCES],
    /// Margins after the event.
    #[serde(default, with = "slots")]
    #[serde(rename = "m", alias = "margins")]
    pub margins: [Option<MarginBalance>; MAX_BALANCES],
    /// Reported by the venue (as opposed to calculated).
    #[serde(default)]
    #[serde(rename = "r", alias = "reported")]
    pub reported: bool,
    /// When it happened.
    #[serde(rename = "te", alias = "ts_event")]
    pub ts_event: UnixNanos,
}

impl AccountEvent {
    /// An event carrying `account`'s current balances and margins.
    pub fn snapshot_of(account: &Account, event_id: u64, ts_event: UnixNanos) -> AccountEvent {
        AccountEvent {
            event_id,
            account_id: account.id.clone(),
            balances: account.balances,
            margins: account.margins.clone(),
            reported: false,
            ts_event,
        }
    }
}

/// Serde for fixed slot arrays: a sequence up to the last used slot (empty
/// slots before it as `null`); decoding accepts up to `N` used slots.
mod slots {
    use super::*;

    pub(super) fn serialize<S: Serializer, T: Serialize, const N: usize>(
        v: &[Option<T>; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v[..v.iter().rposition(Option::is_some).map_or(0, |i| i + 1)].serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>, const N: usize>(
        d: D,
    ) -> Result<[Option<T>; N], D::Error> {
        let v = Vec::<Option<T>>::deserialize(d)?;
        // Trailing empty slots are harmless; more entries are not.
        if v.iter().rposition(Option::is_some).is_some_and(|i| i >= N) {
            let expected = format!("a sequence of at most {N} entries");
            return Err(serde::de::Error::invalid_length(N + 1, &expected.as_str()));
        }
        let mut v = v.into_iter();
        Ok(std::array::from_fn(|_| v.next().flatten()))
    }
}
