//! `sunshare bench http`: the pages and the stations API under concurrent clients, on a fleet of
//! many stations with a year of history, against a bare `SELECT` of a station page's rows from
//! the same store in the same run.

use super::Error;
use crate::domain::{DeviceId, DeviceState, Metric, Readings, Sample};
use crate::store::Store;
use chrono::{DateTime, Duration as ChronoDuration, TimeZone as _, Utc};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `sunshare bench http`: how large the fleet and how hard the load.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Stations in the fleet (one inverter each, 100 to a county).
    pub stations: usize,
    /// Days of history before today.
    pub days: u32,
    /// Readings a day per inverter in the history (spread over daylight).
    pub readings_per_day: u32,
    /// Concurrent clients.
    pub clients: usize,
    /// How long each target is loaded.
    pub duration: Duration,
    /// Where the database goes (default: a temporary directory).
    pub dir: Option<PathBuf>,
    /// Reuse the fleet and history an earlier run of the same size left in `dir`.
    pub reuse: bool,
    /// Only these targets (`fleet`, `county`, `api`, `station`, `peers`); empty: all.
    pub only: Vec<String>,
}

impl HttpOptions {
    fn loads(&self, target: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|t| t == target)
    }

    /// What a run prepared, written next to its database so a later run may reuse it.
    fn marker(&self, now: DateTime<Utc>) -> String {
        format!(
            "stations={} days={} readings_per_day={} prepared_on={}\n",
            self.stations,
            self.days,
            self.readings_per_day,
            now.with_timezone(&chrono_tz::Asia::Shanghai).date_naive()
        )
    }
}

/// Latencies of one target under load.
#[derive(Debug, Clone)]
pub struct Load {
    pub name: String,
    pub requests: usize,
    pub failures: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
}

impl Load {
    fn from_latencies(
        name: &str,
        mut l: Vec<Duration>,
        failures: usize,
        elapsed: Duration,
    ) -> Load {
        l.sort();
        let at = |q: f64| {
            l.get(((l.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or_default()
        };
        Load {
            name: name.to_owned(),
            requests: l.len(),
            failures,
            elapsed,
            p50: at(0.50),
            p99: at(0.99),
        }
    }

    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The deployment: `stations` village stations of 300 kWp, each with its own village, 100 to a
/// county (one township each).
pub fn fleet_toml(stations: usize) -> String {
    let mut t = String::from(
        "[[tariffs]]\nid = \"t\"\nprice = \"0.85\"\nprovince = \"shanxi\"\n\n\
         [[coal_prices]]\nprovince = \"shanxi\"\nfrom = \"2017-01-01\"\nprice = \"0.332\"\n",
    );
    let counties = stations.div_ceil(100).max(1);
    for c in 0..counties {
        let _ = write!(
            t,
            "\n[[counties]]\nid = \"C{c:03}\"\nname = \"县{c:03}\"\nprovince = \"shanxi\"\n\n\
             [[townships]]\nid = \"T{c:03}\"\nname = \"镇{c:03}\"\ncounty = \"C{c:03}\"\n"
        );
    }
    for i in 0..stations {
        let c = i / 100;
        let _ = write!(
            t,
            "\n[[villages]]\ncode = \"V{i:05}\"\nname = \"村{i:05}\"\ntownship = \"T{c:03}\"\n\n\
             [[stations]]\nid = \"S{i:05}\"\nname = \"电站{i:05}\"\nkind = \"village\"\ncounty = \"C{c:03}\"\n\
             capacity_kwp = 300\nlatitude = 37.6\nlongitude = 112.4\ncommissioned = \"2017-06-30\"\n\
             tariff = \"t\"\nvillage = \"V{i:05}\"\n\n\
             [[devices]]\nid = \"S{i:05}-INV1\"\nstation = \"S{i:05}\"\nkind = \"inverter\"\n\
             model = \"huawei_sun2000\"\ntransport = {{ type = \"modbus_tcp\", address = \"10.{}.{}.{}:502\", unit = 1 }}\n\
             rated_power_w = 300000\n",
            i >> 16,
            (i >> 8) & 0xff,
            i & 0xff
        );
    }
    t
}

/// A year of readings for every inverter: `per_day` readings through each day's daylight
/// (07:00-18:00 Beijing), the lifetime counter climbing about 1,200 kWh a day.
async fn write_history(
    store: &Store,
    stations: usize,
    days: u32,
    per_day: u32,
    now: DateTime<Utc>,
) -> Result<usize, Error> {
    let tz = |_: &DeviceId| chrono_tz::Asia::Shanghai;
    let today = now.with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
    let mut written = 0;
    let mut batch = Vec::with_capacity(20_000);
    for i in 0..stations {
        let device = DeviceId::new(format!("S{i:05}-INV1"));
        let mut lifetime = 5_000_000.0 + i as f64;
        for d in (0..days).rev() {
            let day = today - ChronoDuration::days(i64::from(d) + 1);
            let Some(start) = chrono_tz::Asia::Shanghai
                .from_local_datetime(&day.and_hms_opt(7, 0, 0).unwrap_or_default())
                .single()
            else {
                continue;
            };
            for r in 0..per_day {
                let at = start.with_timezone(&Utc)
                    + ChronoDuration::seconds(i64::from(r) * 11 * 3600 / i64::from(per_day.max(1)));
                lifetime += 1_200_000.0 / f64::from(per_day.max(1));
                let mut readings = Readings::default();
                readings.set(Metric::AcPowerW, 150_000.0);
                readings.set(Metric::EnergyLifetimeWh, lifetime);
                readings.state = Some(DeviceState::Producing);
                batch.push(Sample {
                    device: device.clone(),
                    at,
                    readings,
                });
            }
        }
        if batch.len() >= 10_000 {
            written += batch.len();
            store.write_samples(&batch, &tz).await?;
            batch.clear();
        }
    }
    written += batch.len();
    store.write_samples(&batch, &tz).await?;
    store.settle().await?;
    Ok(written)
}

/// Runs `clients` loops for `duration`, each timing `call` with a rotating index.
async fn load<F, Fut>(name: &str, clients: usize, duration: Duration, call: F) -> Load
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let call = Arc::clone(&call);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0;
            let mut n = c;
            while started.elapsed() < duration {
                let t = Instant::now();
                if call(n).await {
                    latencies.push(t.elapsed());
                } else {
                    failures += 1;
                }
                n += clients;
            }
            (latencies, failures)
        }));
    }
    let mut all = Vec::new();
    let mut failures = 0;
    for t in tasks {
        if let Ok((l, f)) = t.await {
            all.extend(l);
            failures += f;
        }
    }
    Load::from_latencies(name, all, failures, started.elapsed())
}

/// The built-in register maps' model names (the fleet's inverters are of one of them).
fn models() -> std::collections::HashSet<String> {
    crate::registers::Catalog::builtin()
        .map(|c| c.names())
        .unwrap_or_default()
}

/// The fleet's history and, as the service's background refresh would compute them after such a
/// backfill, the stations' daily figures, before any page is loaded; how long each takes is logged.
async fn prepare(
    store: &Store,
    deployment: &crate::config::Deployment,
    o: &HttpOptions,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let setup = |e: &dyn std::fmt::Display| Error::Setup(e.to_string());
    let written = write_history(store, o.stations, o.days, o.readings_per_day, now).await?;
    tracing::info!(written, "history written");
    let started = Instant::now();
    crate::energy::daily::add_missing_days(store, deployment, now)
        .await
        .map_err(|e| setup(&e))?;
    let mut days = 0;
    loop {
        let n = crate::energy::daily::recompute_stale(store, deployment, now, 20_000)
            .await
            .map_err(|e| setup(&e))?;
        if n == 0 {
            break;
        }
        days += n;
    }
    tracing::info!(
        days,
        seconds = started.elapsed().as_secs_f64(),
        "stations' daily figures computed"
    );
    let started = Instant::now();
    crate::energy::daily::compose_months(store, deployment, now)
        .await
        .map_err(|e| setup(&e))?;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "stations' monthly figures composed"
    );
    Ok(())
}

/// Every target, then the peer, each on its own.
pub async fn run_http(o: &HttpOptions) -> Result<Vec<Load>, Error> {
    let setup = |e: &dyn std::fmt::Display| Error::Setup(e.to_string());
    let tmp;
    let dir = match &o.dir {
        Some(d) => d.clone(),
        None => {
            tmp = super::TempDir::new("sunshare-bench-http")?;
            tmp.0.clone()
        }
    };
    std::fs::create_dir_all(&dir).map_err(|e| setup(&e))?;
    let text = fleet_toml(o.stations);
    let deployment =
        crate::config::Deployment::from_str_with_env("bench-http.toml", &text, &[], &models())
            .map_err(|e| setup(&e))?;
    let deployment = Arc::new(deployment);
    let now = Utc::now();
    let marker_path = dir.join("bench-http.prepared");
    let prepared = std::fs::read_to_string(&marker_path).ok();
    let reused = o.reuse && prepared.as_deref() == Some(o.marker(now).as_str());
    if o.reuse && !reused {
        return Err(Error::Setup(format!(
            "--reuse: {} does not hold a fleet prepared today with the same --stations, --days \
             and --readings-per-day (it says {:?}); run once without --reuse",
            dir.display(),
            prepared.unwrap_or_default().trim()
        )));
    }
    if !reused {
        // A fresh run never writes over an earlier run's history.
        let _ = std::fs::remove_file(&marker_path);
        for name in ["sunshare.db", "sunshare.db-wal", "sunshare.db-shm"] {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
    let store = Store::open_sqlite(&dir.join("sunshare.db")).await?;
    store.sync_registry(&deployment).await?;
    if !reused {
        prepare(&store, &deployment, o, now).await?;
        std::fs::write(&marker_path, o.marker(now)).map_err(|e| setup(&e))?;
    }
    let state = crate::http::AppState::new(
        Arc::clone(&deployment),
        store.clone(),
        Arc::new(crate::metrics::Metrics::new()),
    );
    // A user of its own per run: a reused database holds the earlier runs' users.
    let token = crate::store::testing::named_token(
        &store,
        &format!("bench-{}", now.timestamp_millis()),
        crate::domain::Role::Admin,
        vec![crate::domain::ScopeEntry::All],
    )
    .await?;
    // A running service has read each county's yields in the background before pages ask.
    let warming = std::time::Instant::now();
    crate::http::warm_caches(&state)
        .await
        .map_err(|e| setup(&e))?;
    tracing::info!(
        seconds = warming.elapsed().as_secs_f64(),
        "counties' yields read ahead"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| setup(&e))?;
    let base = format!("http://{}", listener.local_addr().map_err(|e| setup(&e))?);
    let cancel = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(crate::http::serve(listener, state, cancel.clone()));
    let client = crate::http::testing::client_with_token(&token);
    let stations = o.stations.max(1);
    let get = |path: Arc<dyn Fn(usize) -> String + Send + Sync>| {
        let client = client.clone();
        let base = base.clone();
        move |n: usize| {
            let client = client.clone();
            let url = format!("{base}{}", path(n));
            async move {
                match client.get(url).send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                }
            }
        }
    };
    let mut out = Vec::new();
    if o.loads("fleet") {
        out.push(
            load(
                "fleet page, first page of 50 (`/`)",
                o.clients,
                o.duration,
                get(Arc::new(|_| "/".to_owned())),
            )
            .await,
        );
    }
    if o.loads("county") {
        out.push(
            load(
                "fleet page of one county (`/?county=...`)",
                o.clients,
                o.duration,
                get(Arc::new(move |n| {
                    format!("/?county=C{:03}", n % stations.div_ceil(100))
                })),
            )
            .await,
        );
    }
    if o.loads("api") {
        out.push(
            load(
                "stations API, whole fleet (`/api/stations`)",
                o.clients,
                o.duration,
                get(Arc::new(|_| "/api/stations".to_owned())),
            )
            .await,
        );
    }
    if o.loads("station") {
        out.push(
            load(
                "station page (`/stations/{id}`, every station in turn)",
                o.clients,
                o.duration,
                get(Arc::new(move |n| {
                    format!("/stations/S{:05}", (n * 7919) % stations)
                })),
            )
            .await,
        );
    }
    // The peer: the rows a station page rests on (a year of one inverter's counter readings),
    // read straight from the same store by as many clients.
    if o.loads("peers") {
        let peer_store = store.clone();
        out.push(
            load(
                "peer: bare SELECT of a station's year of counter readings",
                o.clients,
                o.duration,
                move |n| {
                    let store = peer_store.clone();
                    async move {
                        let device = DeviceId::new(format!("S{:05}-INV1", (n * 7919) % stations));
                        store
                            .energy_readings(&device, now - ChronoDuration::days(366), now)
                            .await
                            .is_ok()
                    }
                },
            )
            .await,
        );
    }
    // The rows the station page rests on now: a station's stored closed months and its stored
    // days of this month and the last thirty.
    if o.loads("peers") {
        let peer_store = store.clone();
        out.push(
            load(
                "peer: bare SELECT of a station's stored months and recent days",
                o.clients,
                o.duration,
                move |n| {
                    let store = peer_store.clone();
                    async move {
                        let station =
                            crate::domain::StationId::new(format!("S{:05}", (n * 7919) % stations));
                        let to = now.timestamp_millis();
                        let months = store
                            .station_months(&station, to - 366 * 86_400_000, to)
                            .await;
                        let days = store.station_days(&station, to - 31 * 86_400_000, to).await;
                        months.is_ok() && days.is_ok()
                    }
                },
            )
            .await,
        );
    }
    // The rows the station page now rests on: a station's stored daily figures of a year.
    if o.loads("peers") {
        let peer_store = store.clone();
        out.push(
            load(
                "peer: bare SELECT of a station's year of stored daily figures",
                o.clients,
                o.duration,
                move |n| {
                    let store = peer_store.clone();
                    async move {
                        let station =
                            crate::domain::StationId::new(format!("S{:05}", (n * 7919) % stations));
                        let to = now.timestamp_millis();
                        store
                            .station_days(&station, to - 366 * 86_400_000, to)
                            .await
                            .is_ok()
                    }
                },
            )
            .await,
        );
    }
    cancel.cancel();
    let _ = server.await;
    Ok(out)
}

/// The report: one row per target, and the station page against the peer.
pub fn report(o: &HttpOptions, loads: &[Load]) -> String {
    let mut s = format!(
        "HTTP under load: {} stations, {} days x {} readings of history, {} clients, {:?} per target\n\n\
         | target | requests/s | p50 | p99 | failures |\n|---|---|---|---|---|\n",
        o.stations, o.days, o.readings_per_day, o.clients, o.duration
    );
    for l in loads {
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.1} ms | {:.1} ms | {} |",
            l.name,
            l.per_second(),
            l.p50.as_secs_f64() * 1e3,
            l.p99.as_secs_f64() * 1e3,
            l.failures
        );
    }
    let station = loads.iter().find(|l| l.name.starts_with("station page"));
    if let Some(st) = station {
        for p in loads.iter().filter(|l| l.name.starts_with("peer")) {
            let _ = writeln!(
                s,
                "\nstation page p99 / {} p99 = **{:.2}** (goal <= 3)",
                p.name.trim_start_matches("peer: "),
                st.p99.as_secs_f64() / p.p99.as_secs_f64().max(1e-9)
            );
        }
        let _ = writeln!(s, "\npages and API p99 goal < 50 ms");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_run_loads_every_target_without_failures() {
        let o = HttpOptions {
            stations: 120,
            days: 3,
            readings_per_day: 4,
            clients: 4,
            duration: Duration::from_millis(300),
            dir: None,
            reuse: false,
            only: Vec::new(),
        };
        let loads = run_http(&o).await.expect("run");
        assert_eq!(loads.len(), 7);
        for l in &loads {
            assert!(l.requests > 0, "{}: no request finished", l.name);
            assert_eq!(l.failures, 0, "{}", l.name);
            assert!(l.p99 >= l.p50);
        }
        let text = report(&o, &loads);
        assert!(text.contains("station page p99 / bare SELECT"), "{text}");
    }

    #[test]
    fn the_fleet_has_a_county_per_hundred_stations_and_parses() {
        let text = fleet_toml(250);
        let d = crate::config::Deployment::from_str_with_env("t.toml", &text, &[], &models())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((d.stations.len(), d.counties.len()), (250, 3));
    }
}
