//! The store suite: every test runs on SQLite and, when configured, on PostgreSQL.

use super::testing;
use super::*;
use crate::domain::{DeviceId, DeviceState, Metric, Readings, Sample};
use chrono::{DateTime, Duration, TimeZone, Utc};

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, h, m, 0)
        .single()
        .expect("valid time")
}

fn sample(device: &str, t: DateTime<Utc>, power: f64, lifetime: f64) -> Sample {
    let mut readings = Readings::default();
    readings.set(Metric::AcPowerW, power);
    readings.set(Metric::EnergyLifetimeWh, lifetime);
    readings.state = Some(DeviceState::Producing);
    Sample {
        device: DeviceId::new(device),
        at: t,
        readings,
    }
}

fn shanghai(_: &DeviceId) -> chrono_tz::Tz {
    chrono_tz::Asia::Shanghai
}

#[tokio::test]
async fn samples_land_in_raw_latest_and_rollups() {
    for t in testing::all("samples_land_in_raw_latest_and_rollups")
        .await
        .expect("stores")
    {
        let s = &t.store;
        let batch = vec![
            sample("D1", at(2, 0), 1000.0, 10_000.0),
            sample("D1", at(2, 5), 3000.0, 10_200.0),
            sample("D2", at(2, 1), 500.0, 500.0),
        ];
        let out = s.write_samples(&batch, &shanghai).await.expect("write");
        assert_eq!(out.inserted, 3, "{}", t.name);
        assert_eq!(s.raw_count().await.expect("count"), 3);

        let latest = s.latest().await.expect("latest");
        assert_eq!(latest.len(), 2);
        assert_eq!(latest[0].device.as_str(), "D1");
        assert_eq!(latest[0].at, at(2, 5));
        assert_eq!(latest[0].ac_power_w, Some(3000.0));
        assert_eq!(latest[0].readings.state, Some(DeviceState::Producing));

        let hours = s
            .rollups(&DeviceId::new("D1"), 3600, at(0, 0), at(23, 0))
            .await
            .expect("rollups");
        assert_eq!(hours.len(), 1, "{}", t.name);
        let h = &hours[0];
        assert_eq!(h.samples, 2);
        assert_eq!(h.power_avg_w, Some(2000.0));
        assert_eq!(h.power_min_w, Some(1000.0));
        assert_eq!(h.power_max_w, Some(3000.0));
        assert_eq!(h.energy_first, Some((at(2, 0), 10_000.0)));
        assert_eq!(h.energy_last, Some((at(2, 5), 10_200.0)));
        let fives = s
            .rollups(&DeviceId::new("D1"), 300, at(0, 0), at(23, 0))
            .await
            .expect("rollups");
        assert_eq!(fives.len(), 2);
    }
}

#[tokio::test]
async fn duplicates_are_recognised_and_never_double_counted() {
    for t in testing::all("duplicates_are_recognised_and_never_double_counted")
        .await
        .expect("stores")
    {
        let s = &t.store;
        let first = vec![sample("D1", at(3, 0), 1000.0, 1.0)];
        s.write_samples(&first, &shanghai).await.expect("write");
        let again = vec![
            sample("D1", at(3, 0), 1000.0, 1.0),
            sample("D1", at(3, 1), 2000.0, 2.0),
        ];
        let out = s.write_samples(&again, &shanghai).await.expect("write");
        assert_eq!(
            out,
            WriteOutcome {
                inserted: 1,
                duplicates: 1
            },
            "{}",
            t.name
        );
        let hours = s
            .rollups(&DeviceId::new("D1"), 3600, at(0, 0), at(23, 0))
            .await
            .expect("rollups");
        assert_eq!(hours[0].samples, 2, "{}", t.name);
    }
}

#[tokio::test]
async fn late_data_extends_rollups_and_never_moves_latest_back() {
    for t in testing::all("late_data_extends_rollups_and_never_moves_latest_back")
        .await
        .expect("stores")
    {
        let s = &t.store;
        s.write_samples(&[sample("D1", at(4, 30), 800.0, 5_000.0)], &shanghai)
            .await
            .expect("write");
        // A logger uploads its backlog: earlier readings arrive after a newer one.
        let backlog = vec![
            sample("D1", at(4, 0), 100.0, 4_000.0),
            sample("D1", at(4, 10), 900.0, 4_300.0),
        ];
        s.write_samples(&backlog, &shanghai).await.expect("write");
        let latest = s.latest().await.expect("latest");
        assert_eq!(latest[0].at, at(4, 30), "{}", t.name);
        let hours = s
            .rollups(&DeviceId::new("D1"), 3600, at(0, 0), at(23, 0))
            .await
            .expect("rollups");
        let h = &hours[0];
        assert_eq!(h.samples, 3);
        assert_eq!(h.energy_first, Some((at(4, 0), 4_000.0)), "{}", t.name);
        assert_eq!(h.energy_last, Some((at(4, 30), 5_000.0)), "{}", t.name);
        assert_eq!(h.power_min_w, Some(100.0));
        assert_eq!(h.power_max_w, Some(900.0));
    }
}

#[tokio::test]
async fn raw_retention_keeps_rollups() {
    for t in testing::all("raw_retention_keeps_rollups")
        .await
        .expect("stores")
    {
        let s = &t.store;
        let old = sample("D1", at(1, 0) - Duration::days(40), 10.0, 1.0);
        let new = sample("D1", at(1, 0), 20.0, 2.0);
        s.write_samples(&[old.clone(), new], &shanghai)
            .await
            .expect("write");
        let removed = s
            .purge_raw_before(at(1, 0) - Duration::days(30))
            .await
            .expect("purge");
        assert_eq!(removed, 1, "{}", t.name);
        assert_eq!(s.raw_count().await.expect("count"), 1);
        let days = s
            .rollups(
                &DeviceId::new("D1"),
                86_400,
                old.at - Duration::days(1),
                old.at + Duration::days(1),
            )
            .await
            .expect("rollups");
        assert_eq!(
            days.len(),
            1,
            "{}: the daily rollup outlives the raw sample",
            t.name
        );
    }
}

#[tokio::test]
async fn registry_sync_is_idempotent_and_feeds_the_fleet_view() {
    let text = include_str!("../../sunshare.example.toml");
    let models = crate::app::known_models();
    let d = crate::config::Deployment::from_str_with_env("example", text, &[], &models)
        .expect("the example is valid");
    for t in testing::all("registry_sync_is_idempotent_and_feeds_the_fleet_view")
        .await
        .expect("stores")
    {
        let s = &t.store;
        s.sync_registry(&d).await.expect("sync");
        s.sync_registry(&d).await.expect("sync twice");
        let ids = s.station_ids().await.expect("ids");
        assert_eq!(ids.len(), d.stations.len(), "{}", t.name);
        let device = &d.devices[0];
        s.write_samples(
            &[sample(device.id.as_str(), at(5, 0), 1234.0, 1.0)],
            &shanghai,
        )
        .await
        .expect("write");
        let fleet = s.fleet_now().await.expect("fleet");
        let now = &fleet[&device.station];
        assert_eq!(now.reporting, 1);
        assert!(now.devices >= 1);
        assert_eq!(now.power_w, 1234.0);
        assert_eq!(now.last_contact, Some(at(5, 0)));
    }
}

#[tokio::test]
async fn corrupt_stored_times_and_readings_are_errors_naming_them_on_every_backend() {
    for t in testing::all("corrupt_stored_times_and_readings_are_errors")
        .await
        .expect("stores")
    {
        let s = &t.store;
        let d1 = DeviceId::new("D1");
        s.write_samples(&[sample("D1", at(2, 0), 1000.0, 10_000.0)], &shanghai)
            .await
            .expect("write");
        assert_eq!(s.latest().await.expect("latest").len(), 1, "{}", t.name);
        let exec = |sql: &'static str| async move {
            sqlx::query(sql)
                .execute(s.pool())
                .await
                .expect("corrupt a row");
        };
        // Readings that are not JSON: an error naming the table, device and time, not `{}`.
        exec("UPDATE raw_samples SET readings = 'not json'").await;
        let e = s
            .raw_samples(&d1, at(0, 0), at(23, 0))
            .await
            .expect_err("corrupt readings");
        let text = e.to_string();
        assert!(
            text.contains("raw_samples.readings of device D1"),
            "{}: {text}",
            t.name
        );
        // A time no calendar holds: an error naming the column, not 1970.
        exec("UPDATE latest SET ts_ms = 9223372036854775807").await;
        let e = s.latest().await.expect_err("corrupt time");
        let text = e.to_string();
        assert!(
            text.contains("latest.ts_ms holds 9223372036854775807"),
            "{}: {text}",
            t.name
        );
    }
}

/// A transaction that reads before it writes (a settlement import checks the months are not yet
/// settled) while samples are being written on the writer connection: on SQLite a deferred
/// transaction whose snapshot went stale fails at once with "database is locked" instead of
/// waiting its turn. Every such import here must land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_reads_first_waits_for_concurrent_sample_writes_instead_of_failing() {
    let t = testing::sqlite().await.expect("store");
    let store = t.store.clone();
    let writer = tokio::spawn(async move {
        for i in 0..400_i64 {
            let batch = vec![sample(
                "D1",
                at(0, 0) + Duration::seconds(i),
                1000.0,
                1_000.0 + i as f64,
            )];
            store
                .write_samples(&batch, &shanghai)
                .await
                .expect("samples");
        }
    });
    let mut imported = 0;
    for i in 0..60_u32 {
        let month =
            crate::domain::YearMonth::new(2000 + i32::try_from(i / 12).unwrap_or(0), i % 12 + 1)
                .expect("month");
        let import = energy::SettlementImportRow {
            id: 0,
            source: format!("结算单-{i}.csv"),
            sha256: format!("{i:064x}"),
            size_bytes: 10,
            encoding: "utf-8".into(),
            lines: 1,
            uploaded: at(1, 0),
        };
        let row = energy::SettlementRow {
            station: crate::domain::StationId::new("S1"),
            month,
            energy: crate::domain::WattHours(1000),
            amount: None,
            source: import.source.clone(),
            source_line: 2,
            imported: at(1, 0),
            import_id: None,
            computed: None,
        };
        match t.store.insert_settlements(&import, &[row]).await {
            Ok(energy::SettlementInsert::Inserted { .. }) => imported += 1,
            other => panic!("import {i} while samples were written: {other:?}"),
        }
    }
    writer.await.expect("writer");
    assert_eq!(imported, 60);
}

/// A singleton job's write under a lease it lost (a leader paused past its lease while another
/// took over) is refused, on every backend; under the lease it holds, it lands.
#[tokio::test]
async fn a_write_under_a_lost_jobs_lease_is_fenced_off() {
    for t in testing::all("a_write_under_a_lost_jobs_lease_is_fenced_off")
        .await
        .expect("stores")
    {
        let s = &t.store;
        let long = std::time::Duration::from_secs(60);
        let fence_a = s
            .claim_lease(JOBS_LEASE, "a", long)
            .await
            .expect("a")
            .expect("held");
        let a = Fence {
            lease: JOBS_LEASE,
            holder: "a".into(),
            fence: fence_a,
        };
        let alert = |subject: &'static str| NewAlert {
            kind: "offline",
            station: "S1",
            subject,
            county: "C1",
            severity: "critical",
            message: "silent",
            opened_at: at(2, 0),
            since: at(1, 0),
            flapping: false,
        };
        let id = s
            .open_alert_fenced(&alert("g1"), Some(&a))
            .await
            .expect("written while a leads");
        // a pauses past its lease; b takes the jobs.
        s.release_lease(JOBS_LEASE, "a").await.expect("ran out");
        let fence_b = s
            .claim_lease(JOBS_LEASE, "b", long)
            .await
            .expect("b")
            .expect("held");
        assert!(fence_b > fence_a);
        let refused = s.open_alert_fenced(&alert("g2"), Some(&a)).await;
        assert!(
            matches!(refused, Err(Error::Fenced(_))),
            "{}: {refused:?}",
            t.name
        );
        let refused = s
            .resolve_alert_fenced(id, at(3, 0), "cleared", Some(&a))
            .await;
        assert!(
            matches!(refused, Err(Error::Fenced(_))),
            "{}: {refused:?}",
            t.name
        );
        assert_eq!(
            s.count_unresolved_alerts().await.expect("count"),
            1,
            "{}",
            t.name
        );
        let b = Fence {
            lease: JOBS_LEASE,
            holder: "b".into(),
            fence: fence_b,
        };
        assert!(s
            .resolve_alert_fenced(id, at(3, 0), "cleared", Some(&b))
            .await
            .expect("written while b leads"));
    }
}

/// Instances starting together on one database each write the registry mirror at start-up: the
/// syncs take turns, and none stops on a duplicate key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_syncs_at_the_same_time_take_turns() {
    let text = include_str!("../../sunshare.example.toml");
    let models = crate::app::known_models();
    let d = crate::config::Deployment::from_str_with_env("example", text, &[], &models)
        .expect("the example is valid");
    for t in testing::all("registry_syncs_at_the_same_time_take_turns")
        .await
        .expect("stores")
    {
        for _ in 0..5 {
            let (a, b, c) = tokio::join!(
                t.store.sync_registry(&d),
                t.store.sync_registry(&d),
                t.store.sync_registry(&d)
            );
            for r in [a, b, c] {
                r.unwrap_or_else(|e| panic!("{}: {e}", t.name));
            }
        }
        assert_eq!(
            t.store.station_ids().await.expect("ids").len(),
            d.stations.len()
        );
    }
}
