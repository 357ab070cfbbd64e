use eventcore::ids::{check_data_ids, check_skus};
use eventcore::{EventData, FieldError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One SKU and how many units of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockLine {
    pub sku: String,
    pub quantity: u32,
}

/// Every line of the order is held for it, atomically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryReserved {
    pub order_id: String,
    pub reservation_id: String,
    pub lines: Vec<StockLine>,
}

impl EventData for InventoryReserved {
    const DETAIL_TYPE: &'static str = "InventoryReserved";
    const SOURCE: &'static str = crate::sources::INVENTORY;

    fn validate(&self) -> Result<(), FieldError> {
        check_data_ids(&[
            ("orderId", &self.order_id),
            ("reservationId", &self.reservation_id),
        ])?;
        check_skus("lines", self.lines.iter().map(|line| line.sku.as_str()))
    }
}

/// A SKU the order wants more of than there is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Shortage {
    pub sku: String,
    pub requested: u32,
    pub available: u32,
}

/// Nothing was reserved: these SKUs are short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryOutOfStock {
    pub order_id: String,
    pub shortages: Vec<Shortage>,
}

impl EventData for InventoryOutOfStock {
    const DETAIL_TYPE: &'static str = "InventoryOutOfStock";
    const SOURCE: &'static str = crate::sources::INVENTORY;

    fn validate(&self) -> Result<(), FieldError> {
        check_data_ids(&[("orderId", &self.order_id)])?;
        check_skus(
            "shortages",
            self.shortages.iter().map(|line| line.sku.as_str()),
        )
    }
}

/// Compensation: the saga asks for the order's reservation to be released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseInventoryRequested {
    pub order_id: String,
    pub reason: String,
}

impl EventData for ReleaseInventoryRequested {
    const DETAIL_TYPE: &'static str = "ReleaseInventoryRequested";
    const SOURCE: &'static str = crate::sources::SAGA;

    fn validate(&self) -> Result<(), FieldError> {
        check_data_ids(&[("orderId", &self.order_id)])
    }
}

/// The reservation's stock is back on the shelf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryReleased {
    pub order_id: String,
    pub reservation_id: String,
    pub lines: Vec<StockLine>,
}

impl EventData for InventoryReleased {
    const DETAIL_TYPE: &'static str = "InventoryReleased";
    const SOURCE: &'static str = crate::sources::INVENTORY;

    fn validate(&self) -> Result<(), FieldError> {
        check_data_ids(&[
            ("orderId", &self.order_id),
            ("reservationId", &self.reservation_id),
        ])?;
        check_skus("lines", self.lines.iter().map(|line| line.sku.as_str()))
    }
}
