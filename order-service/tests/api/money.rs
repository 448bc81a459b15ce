use reqwest::StatusCode;
use rust_decimal::Decimal;
use sea_orm::EntityTrait;
use serde_json::json;

use crate::helpers::*;
use crate::on_both_backends;
use order_service::entity::{order, order_item};

/// 3 × 29.99 is 89.97 and 0.1 + 0.2 is 0.30, in the answer's own digits and in the stored row.
async fn money_is_exact_through_the_api_and_the_database(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.new_user("Ada").await;
    let cases = [
        (
            order_body(&ada.id, &[("widget", 3, json!(29.99))]),
            "89.97",
            vec!["29.99"],
        ),
        (
            order_body(&ada.id, &[("a", 1, json!(0.1)), ("b", 1, json!("0.2"))]),
            "0.30",
            vec!["0.10", "0.20"],
        ),
        (
            order_body(&ada.id, &[("big", 10_000, json!("999999.99"))]),
            "9999999900.00",
            vec!["999999.99"],
        ),
    ];
    for (body, total, prices) in cases {
        let response = app.create_order(&body, ada.token()).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let text = response.text().await.unwrap();
        assert!(
            text.contains(&format!(r#""total_amount":{total}"#)),
            "total {total} not written exactly in {text}"
        );
        for price in &prices {
            assert!(
                text.contains(&format!(r#""price":{price}"#)),
                "{price} in {text}"
            );
        }
        let order: serde_json::Value = serde_json::from_str(&text).unwrap();
        let id: uuid::Uuid = order["id"].as_str().unwrap().parse().unwrap();

        let row = order::Entity::find_by_id(id)
            .one(&app.db)
            .await
            .unwrap()
            .expect("stored order");
        assert_eq!(row.total_amount.amount(), total.parse::<Decimal>().unwrap());
        assert_eq!(row.total_amount.to_string(), total);
        let items = order_item::Entity::find().all(&app.db).await.unwrap();
        let stored: Vec<String> = items
            .iter()
            .filter(|item| item.order_id == id)
            .map(|item| item.price.to_string())
            .collect();
        assert_eq!(stored, prices);

        let fetched = app
            .get_order(&id.to_string(), ada.token())
            .await
            .text()
            .await
            .unwrap();
        assert!(
            fetched.contains(&format!(r#""total_amount":{total}"#)),
            "{fetched}"
        );
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("orders_created_total 3"), "{metrics}");
    assert!(metrics.contains("order_amount_count 3"), "{metrics}");
}

on_both_backends!(money_is_exact_through_the_api_and_the_database);
