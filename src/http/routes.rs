//! The route table: every route is added here with the access it needs, so the table is also the
//! list a test walks. No route reaches the router without a declared [`Access`].

use super::guard::{guard, Guarded};
use super::AppState;
use crate::auth::Action;
use axum::handler::Handler;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

/// Which path parameter names the place a route works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceFrom {
    /// The route works on the whole fleet (or on no place at all).
    Fleet,
    /// `{param}` is a station id.
    Station(&'static str),
    /// `{param}` is a village code.
    Village(&'static str),
    /// `{param}` is an alert id; the place is its station's.
    Alert(&'static str),
}

/// What a route needs: the action it performs and the place it performs it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub action: Action,
    pub place: PlaceFrom,
}

impl Access {
    pub const PUBLIC: Access = Access {
        action: Action::Public,
        place: PlaceFrom::Fleet,
    };

    pub const fn fleet(action: Action) -> Access {
        Access {
            action,
            place: PlaceFrom::Fleet,
        }
    }

    pub const fn station(action: Action, param: &'static str) -> Access {
        Access {
            action,
            place: PlaceFrom::Station(param),
        }
    }

    pub const fn village(action: Action, param: &'static str) -> Access {
        Access {
            action,
            place: PlaceFrom::Village(param),
        }
    }

    pub const fn alert(action: Action, param: &'static str) -> Access {
        Access {
            action,
            place: PlaceFrom::Alert(param),
        }
    }
}

/// One route as declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    /// Pages that read much: they share a bounded number of concurrent requests.
    pub heavy: bool,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
}

impl RouteSpec {
    /// JSON API routes answer errors as JSON; pages answer with HTML and send a browser that is
    /// not signed in to the login form.
    pub fn is_api(&self) -> bool {
        self.path.starts_with("/api/") || self.path == "/metrics" || self.path == "/healthz"
    }

    pub fn changes_state(&self) -> bool {
        self.method != "GET"
    }
}

/// Routes being declared, each with its access.
#[derive(Debug, Default)]
pub struct Routes {
    entries: Vec<(RouteSpec, MethodRouter<AppState>)>,
}

impl Routes {
    pub fn new() -> Routes {
        Routes::default()
    }

    pub fn get<H, T>(self, path: &'static str, access: Access, handler: H) -> Routes
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add("GET", MethodFilter::GET, path, access, handler)
    }

    pub fn post<H, T>(self, path: &'static str, access: Access, handler: H) -> Routes
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add("POST", MethodFilter::POST, path, access, handler)
    }

    fn add<H, T>(
        mut self,
        method: &'static str,
        filter: MethodFilter,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Routes
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let spec = RouteSpec {
            method,
            path,
            access,
            heavy: false,
            body_limit: super::MAX_BODY,
        };
        self.entries.push((spec, on(filter, handler)));
        self
    }

    /// Marks the route added last as a heavy page.
    pub fn heavy(mut self) -> Routes {
        if let Some((spec, _)) = self.entries.last_mut() {
            spec.heavy = true;
        }
        self
    }

    /// Gives the route added last a larger body limit (file uploads).
    pub fn upload(mut self, limit: usize) -> Routes {
        if let Some((spec, _)) = self.entries.last_mut() {
            spec.body_limit = limit;
        }
        self
    }

    pub fn merge(mut self, other: Routes) -> Routes {
        self.entries.extend(other.entries);
        self
    }

    pub fn specs(&self) -> Vec<RouteSpec> {
        self.entries.iter().map(|(s, _)| *s).collect()
    }

    /// The router: each route behind its guard and its body limit.
    pub fn into_router(self, state: &AppState) -> Router<AppState> {
        let mut router = Router::new();
        for (spec, method_router) in self.entries {
            let guarded = Guarded {
                state: state.clone(),
                spec,
            };
            let method_router = method_router
                .layer(axum::extract::DefaultBodyLimit::max(spec.body_limit))
                .route_layer(axum::middleware::from_fn_with_state(guarded, guard));
            router = router.route(spec.path, method_router);
        }
        router
    }
}
