use service_kit::audit::DETAIL_DOC;
use service_kit::auth::BearerAuth;
use utoipa::OpenApi;

use crate::routes::orders;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "order-service",
        description = "Orders of the microservices platform, compatible with the original FastAPI \
                       service. Money is decimal end to end: JSON numbers written from their \
                       digits, two decimals; `total_amount` is the exact sum of price × quantity, \
                       rounded to cents half-to-even (banker's rounding). Lists take `limit` \
                       (default 50, at most 200) and `offset`, and return the total in \
                       `X-Total-Count`. Errors are `{\"detail\": …}`; 422 lists each invalid \
                       field as `{type, loc, msg}`."
    ),
    paths(orders::list, orders::list_for_user, orders::get, orders::create, orders::update_status, orders::delete),
    modifiers(&BearerAuth, &DETAIL_DOC),
)]
pub struct ApiDoc;
