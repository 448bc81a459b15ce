//! The benchmark's ceiling: a minimal actix-web server whose one handler returns a constant
//! small JSON document. It runs with actix-web's defaults (one worker per core), as the
//! services do, so `service req/s ÷ ceiling req/s` measures what the service's own work costs.
//!
//! Usage: `bench-ceiling [PORT]` (default 18080), listening on 127.0.0.1 only.

use actix_web::{App, HttpResponse, HttpServer, get};
use serde::Serialize;

#[derive(Serialize)]
struct Pong {
    success: bool,
    message: &'static str,
}

#[get("/")]
async fn pong() -> HttpResponse {
    HttpResponse::Ok().json(Pong {
        success: true,
        message: "ok",
    })
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(arg) => arg.parse().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "PORT must be a number")
        })?,
        None => 18080,
    };
    HttpServer::new(|| App::new().service(pong))
        .bind(("127.0.0.1", port))?
        .run()
        .await
}
