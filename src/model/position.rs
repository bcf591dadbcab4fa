//! Positions and fill accounting.

use serde::{Deserialize, Serialize};

use super::order::weighted_avg;
use super::value::div_round;
use super::{example_id, Currency, Money, OrderSide, Price, Quantity, UnixNanos};
use crate::ident::Ident;

/// Long, short or flat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PositionSide {
    /// Long.
    Long,
    /// Short.
    Short,
    /// Flat.
    Flat,
}

/// A fill could not be applied to a position: a quantity, price or PnL does
/// not fit the fixed-point types. The position is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("position arithmetic overflow")]
pub struct PositionError;

/// A position's latest state (`positions:{id}`).
///
/// [`Position::apply_fill`] keeps it up to date in exact integer arithmetic:
/// fills on the position's side add (weighted average open price), fills
/// against it reduce it, realizing PnL, and may close or flip it.
///
/// # Examples
///
/// ```
/// use tradecache::model::{OrderSide, Position, PositionSide, Price, Quantity, UnixNanos};
///
/// let mut p = Position::example("BTCUSDT-PERP.BINANCE-001"); // long 1.000 @ 60000.00
/// p.apply_fill(OrderSide::Sell, "61000.00".parse().unwrap(), "0.400".parse().unwrap(), UnixNanos(2));
/// assert_eq!(p.quantity, Quantity::new(600, 3));
/// assert_eq!(p.realized_pnl.to_string(), "400.00 USDT");
/// p.apply_fill(OrderSide::Sell, Price::new(6_200_000, 2), Quantity::new(600, 3), UnixNanos(3));
/// assert_eq!(p.side, PositionSide::Flat);
/// assert_eq!(p.realized_pnl.to_string(), "1600.00 USDT");
/// assert_eq!(p.avg_px_close, Some(Price::new(6_160_000, 2)));
/// assert_eq!(p.ts_closed, Some(UnixNanos(3)));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// `BTCUSDT-PERP.BINANCE-001`.
    pub id: Ident,
    /// The instrument.
    #[serde(rename = "i", alias = "instrument_id")]
    pub instrument_id: Ident,
    /// The account.
    #[serde(rename = "a", alias = "account_id")]
    pub account_id: Ident,
    /// The order that opened it.
    #[serde(rename = "o", alias = "opening_order_id")]
    pub opening_order_id: Ident,
    /// Long, short or flat.
    #[serde(rename = "s", alias = "side")]
    pub side: PositionSide,
    /// Open quantity (unsigned; the side gives the direction).
    #[serde(rename = "q", alias = "quantity")]
    pub quantity: Quantity,
    /// Average open price of the current quantity.
    #[serde(rename = "po", alias = "avg_px_open")]
    pub avg_px_open: Price,
    /// Average price of the closing fills since the position was last
    /// opened (or flipped); `None` before the first reduction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "pc", alias = "avg_px_close")]
    pub avg_px_close: Option<Price>,
    /// Quantity closed since the position was last opened (or flipped):
    /// the weight of `avg_px_close`.
    #[serde(default)]
    #[serde(rename = "qc", alias = "closed_qty")]
    pub closed_qty: Quantity,
    /// PnL realized over the position's life, before fees:
    /// (close − open) × quantity, in this amount's currency and precision
    /// (linear contracts, multiplier 1).
    #[serde(rename = "pnl", alias = "realized_pnl")]
    pub realized_pnl: Money,
    /// When the current position was opened (or flipped).
    #[serde(rename = "to", alias = "ts_opened")]
    pub ts_opened: UnixNanos,
    /// When it was last closed, while it is flat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "tc", alias = "ts_closed")]
    pub ts_closed: Option<UnixNanos>,
    /// Last change.
    #[serde(rename = "tl", alias = "ts_last")]
    pub ts_last: UnixNanos,
}

impl Position {
    /// A long of 1.000 BTCUSDT-PERP.BINANCE at 60,000.00 on account
    /// `BINANCE-001`, PnL in USDT with 2 decimals, for examples, tests and
    /// benches. An invalid id is replaced by `invalid-id`.
    pub fn example(id: &str) -> Position {
        Position {
            id: example_id(id),
            instrument_id: example_id("BTCUSDT-PERP.BINANCE"),
            account_id: example_id("BINANCE-001"),
            opening_order_id: example_id("O-1"),
            side: PositionSide::Long,
            quantity: Quantity::new(1_000, 3),
            avg_px_open: Price::new(6_000_000, 2),
            avg_px_close: None,
            closed_qty: Quantity::zero(3),
            realized_pnl: Money::zero(2, Currency::USDT),
            ts_opened: UnixNanos(1_700_000_000_000_000_000),
            ts_closed: None,
            ts_last: UnixNanos(1_700_000_000_000_000_000),
        }
    }

    /// The signed open quantity's raw value at the quantity's precision
    /// (negative when short).
    pub fn signed_qty_raw(&self) -> i128 {
        self.signed(self.quantity)
    }

    /// `q`'s raw value with the sign of the position's side (0 when flat).
    fn signed(&self, q: Quantity) -> i128 {
        match self.side {
            PositionSide::Short => -i128::from(q.raw),
            PositionSide::Long => i128::from(q.raw),
            PositionSide::Flat => 0,
        }
    }

    /// Applies a fill; on arithmetic overflow (see
    /// [`Position::try_apply_fill`]) the position is left unchanged and the
    /// problem logged.
    pub fn apply_fill(&mut self, side: OrderSide, last_px: Price, last_qty: Quantity, ts: UnixNanos) {
        if let Err(e) = self.try_apply_fill(side, last_px, last_qty, ts) {
            log::warn!("position {}: fill of {last_qty} @ {last_px} not applied: {e}", self.id);
        }
    }

    /// Applies a fill of `last_qty` at `last_px` on `side`:
    ///
    /// - flat, or the same direction: the quantity grows and the open price
    ///   becomes the quantity-weighted average (rounded half away from
    ///   zero); from flat, the position reopens (`ts_opened`, close data
    ///   reset);
    /// - the other direction: the closed part realizes
    ///   (px − avg open) × qty (negated for shorts) into `realized_pnl`,
    ///   rounded half away from zero to its precision, and updates
    ///   `avg_px_close`; at zero the position is flat (`ts_closed`); beyond
    ///   zero it flips, reopening the remainder at `last_px`.
    ///
    /// Quantities and prices are aligned to the finer precision involved.
    ///
    /// # Errors
    ///
    /// [`PositionError`] on overflow; the position is then unchanged.
    pub fn try_apply_fill(
        &mut self,
        side: OrderSide,
        last_px: Price,
        last_qty: Quantity,
        ts: UnixNanos,
    ) -> Result<(), PositionError> {
        let mut p = self.clone();
        p.fill(side, last_px, last_qty, ts).ok_or(PositionError)?;
        *self = p;
        Ok(())
    }

    fn fill(&mut self, side: OrderSide, last_px: Price, last_qty: Quantity, ts: UnixNanos) -> Option<()> {
        let qp = self.quantity.precision.max(last_qty.precision).max(self.closed_qty.precision);
        let pp = self.avg_px_open.precision.max(last_px.precision);
        let before = self.signed(self.quantity.rescale(qp)?);
        let fill_raw = i128::from(last_qty.rescale(qp)?.raw);
        let delta = if side == OrderSide::Buy { fill_raw } else { -fill_raw };
        let after = before.checked_add(delta)?;
        let open = i128::from(self.avg_px_open.rescale(pp)?.raw);
        let px = last_px.rescale(pp)?;
        let qty = |raw: i128| -> Option<Quantity> {
            Some(Quantity::new(u64::try_from(raw.unsigned_abs()).ok()?, qp))
        };

        // (Re)opening, or the remainder of a flip opening at the fill price.
        let reopen = |p: &mut Position| {
            p.avg_px_open = px;
            p.avg_px_close = None;
            p.closed_qty = Quantity::zero(qp);
            p.ts_opened = ts;
            p.ts_closed = None;
        };
        if before == 0 {
            reopen(self);
        } else if (before > 0) == (delta > 0) || delta == 0 {
            // Adding.
            let avg = weighted_avg(Price::new(i64::try_from(open).ok()?, pp), qty(before)?, px, qty(delta)?)?;
            self.avg_px_open = avg;
        } else {
            // Reducing, possibly closing or flipping.
            let closed = before.abs().min(delta.abs());
            let per_unit = (i128::from(px.raw) - open).checked_mul(before.signum())?;
            let pnl_scaled = per_unit.checked_mul(closed)?; // pp + qp decimals
            let mp = self.realized_pnl.precision;
            let shift = i32::from(pp) + i32::from(qp) - i32::from(mp);
            let pnl = if shift >= 0 {
                div_round(pnl_scaled, 10i128.checked_pow(shift as u32)?)
            } else {
                pnl_scaled.checked_mul(10i128.checked_pow((-shift) as u32)?)?
            };
            let realized = i128::from(self.realized_pnl.raw).checked_add(pnl)?;
            self.realized_pnl.raw = i64::try_from(realized).ok()?;
            let prev_closed = self.closed_qty.rescale(qp)?;
            self.avg_px_close = Some(match self.avg_px_close {
                None => px,
                Some(c) => weighted_avg(c, prev_closed, px, qty(closed)?)?,
            });
            self.closed_qty = prev_closed.checked_add(qty(closed)?)?;
            if after == 0 {
                self.ts_closed = Some(ts);
            } else if after.signum() != before.signum() {
                reopen(self);
            }
        }
        self.side = match after.signum() {
            1 => PositionSide::Long,
            -1 => PositionSide::Short,
            _ => PositionSide::Flat,
        };
        self.quantity = qty(after)?;
        self.ts_last = ts;
        Some(())
    }
}
