//! The stock and reservations tables in memory, for the service's tests, with the DynamoDB
//! adapter's conditions: a reservation is taken only if the order has no record and every
//! line has enough stock, all or nothing; a record is written only by the first writer; a
//! release happens only while the record is `RESERVED`. One lock around each operation
//! stands in for a transaction's isolation.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use eventkit::testing::{lock, MemoryTable};
use eventkit::FirstWrite;

use super::{
    stock_level, InventoryRepository, Release, ReleaseRequest, RepositoryError, Reservation,
    Reserve,
};
use crate::decision::ReservationStatus;

#[derive(Default)]
pub struct MemoryInventory {
    /// Stock level by SKU. Signed, as a DynamoDB number is.
    stock: MemoryTable<i64>,
    /// Reservation records by order id.
    reservations: MemoryTable<Reservation>,
    /// Held by each operation: DynamoDB runs a transaction's items as one.
    transaction: Mutex<()>,
    /// Transactions still to be cancelled as `TransactionConflict`.
    conflicts_left: Mutex<u32>,
}

impl MemoryInventory {
    pub fn with_stock(levels: &[(&str, i64)]) -> Self {
        let inventory = MemoryInventory::default();
        for (sku, level) in levels {
            inventory.set_stock(sku, *level);
        }
        inventory
    }

    /// What an operator (or the seed script) does: sets a SKU's level outright.
    pub fn set_stock(&self, sku: &str, level: i64) {
        self.stock.put(sku, level);
    }

    /// Every SKU's level.
    pub fn stock(&self) -> HashMap<String, i64> {
        self.stock.items().into_iter().collect()
    }

    /// Stores a record as it is, as an older version of the function may have written it.
    pub fn put_record(&self, record: Reservation) {
        self.reservations.put(&record.order_id.clone(), record);
    }

    pub fn record(&self, order_id: &str) -> Option<Reservation> {
        self.reservations.get(order_id)
    }

    /// The next `n` transactions are cancelled as if another write raced them.
    pub fn conflict_next(&self, n: u32) {
        *lock(&self.conflicts_left) = n;
    }

    fn raced(&self) -> bool {
        let mut left = lock(&self.conflicts_left);
        let raced = *left > 0;
        *left = left.saturating_sub(1);
        raced
    }

    /// `ADD #stock :q`: an absent item is created with the quantity.
    fn add_stock(&self, sku: &str, quantity: u32) {
        let quantity = i64::from(quantity);
        if self
            .stock
            .update_if(sku, |level| {
                *level += quantity;
                true
            })
            .is_none()
        {
            self.stock.put(sku, quantity);
        }
    }
}

#[async_trait]
impl InventoryRepository for MemoryInventory {
    async fn reserve(&self, reservation: &Reservation) -> Result<Reserve, RepositoryError> {
        let _transaction = lock(&self.transaction);
        if self.raced() {
            return Ok(Reserve::Conflict);
        }
        // The record's condition is reported over the stock's, as the adapter does.
        if self.reservations.get(&reservation.order_id).is_some() {
            return Ok(Reserve::AlreadyRecorded);
        }
        let short = reservation.lines.iter().any(|line| {
            self.stock
                .get(&line.sku)
                .is_none_or(|level| level < i64::from(line.quantity))
        });
        if short {
            return Ok(Reserve::Short);
        }
        for line in &reservation.lines {
            self.stock.update_if(&line.sku, |level| {
                *level -= i64::from(line.quantity);
                true
            });
        }
        self.reservations
            .put(&reservation.order_id, reservation.clone());
        Ok(Reserve::Reserved)
    }

    async fn stock_levels(&self, skus: &[&str]) -> Result<HashMap<String, u32>, RepositoryError> {
        let _transaction = lock(&self.transaction);
        Ok(skus
            .iter()
            .filter_map(|sku| {
                let level = self.stock.get(sku)?;
                Some((sku.to_string(), stock_level(Some(level))))
            })
            .collect())
    }

    async fn record_once(
        &self,
        reservation: &Reservation,
    ) -> Result<FirstWrite<Reservation>, RepositoryError> {
        let _transaction = lock(&self.transaction);
        Ok(self
            .reservations
            .first_write(&reservation.order_id, reservation.clone()))
    }

    async fn reservation(&self, order_id: &str) -> Result<Option<Reservation>, RepositoryError> {
        let _transaction = lock(&self.transaction);
        Ok(self.reservations.get(order_id))
    }

    async fn release(
        &self,
        reservation: &Reservation,
        request: &ReleaseRequest,
    ) -> Result<Release, RepositoryError> {
        let _transaction = lock(&self.transaction);
        if self.raced() {
            return Ok(Release::Conflict);
        }
        let released = self
            .reservations
            .update_if(&reservation.order_id, |stored| {
                if stored.status != ReservationStatus::Reserved {
                    return false;
                }
                stored.status = ReservationStatus::Released;
                stored.released_at = Some(request.at.clone());
                stored.release_event_id = Some(request.event_id.clone());
                stored.release_reason = Some(request.reason.clone());
                true
            });
        if released.is_none() {
            return Ok(Release::NotReserved);
        }
        // The lines of the record as the caller read it, as the adapter's transaction has.
        for line in &reservation.lines {
            self.add_stock(&line.sku, line.quantity);
        }
        Ok(Release::Released)
    }
}
