//! The docker-compose deployment is consistent without a Docker engine: `docker-compose.yml` parses,
//! every variable it interpolates is documented in `.env.example` (and nothing secret is written in
//! it), every file it mounts is in the repository, every dependency names a service that can satisfy
//! its condition, the deployment file it mounts passes Sunshare's configuration check with the
//! environment it sets, and the Mosquitto ACL, the Grafana provisioning and the image fit it.
//! (The dashboards' queries are checked against the sink's output in `src/sinks/influx.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(docs.len(), 1, "{path} is one YAML document");
    docs.remove(0)
}

fn compose() -> Yaml {
    yaml("docker-compose.yml")
}

/// The entries of a mapping, keys as text.
fn entries(y: &Yaml) -> Vec<(&str, &Yaml)> {
    y.as_hash()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default(), v))
                .collect()
        })
        .unwrap_or_default()
}

fn services(c: &Yaml) -> BTreeMap<&str, &Yaml> {
    let s: BTreeMap<&str, &Yaml> = entries(&c["services"]).into_iter().collect();
    assert!(!s.is_empty(), "docker-compose.yml has services");
    s
}

/// A service's environment as pairs, from the mapping or the `KEY=value` list form.
fn environment(service: &Yaml) -> Vec<(String, String)> {
    let env = &service["environment"];
    if let Some(list) = env.as_vec() {
        return list
            .iter()
            .filter_map(|e| e.as_str()?.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    }
    entries(env)
        .into_iter()
        .map(|(k, v)| {
            let value = match v {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                Yaml::Boolean(b) => b.to_string(),
                other => panic!("{k}: an environment value is a scalar, not {other:?}"),
            };
            (k.to_owned(), value)
        })
        .collect()
}

/// Every string scalar in the document (values and list items; keys are names, not values).
fn strings<'y>(y: &'y Yaml, out: &mut Vec<&'y str>) {
    match y {
        Yaml::String(s) => out.push(s),
        Yaml::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Yaml::Hash(h) => h.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// One `${...}` interpolation: the variable and what follows its name (`:?message`, `:-default`).
#[derive(Debug)]
struct Interpolation {
    name: String,
    modifier: String,
}

/// The interpolations in one value as docker compose reads them (`$$` is a literal `$`); a bare
/// `$NAME` is refused so that every use is written in the checked form.
fn interpolations(value: &str) -> Vec<Interpolation> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        if let Some(escaped) = after.strip_prefix('$') {
            rest = escaped;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {value}"));
            let expr = &inner[..end];
            let name_end = expr.find([':', '?', '-', '+']).unwrap_or(expr.len());
            out.push(Interpolation {
                name: expr[..name_end].to_owned(),
                modifier: expr[name_end..].to_owned(),
            });
            rest = &inner[end + 1..];
        } else {
            assert!(
                !after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'),
                "write ${{NAME:?message}}, not a bare $NAME, in {value}"
            );
            rest = after;
        }
    }
    out
}

/// `.env.example` as KEY -> placeholder value (comments and blank lines skipped).
fn env_example() -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in read(".env.example").lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!(".env.example: '{line}' is not KEY=value"));
        assert!(
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
            ".env.example: '{k}' is not a variable name"
        );
        assert!(
            vars.insert(k.to_owned(), v.to_owned()).is_none(),
            ".env.example sets {k} twice"
        );
    }
    vars
}

/// A value with its interpolations replaced by `.env.example`'s placeholders.
fn substituted(value: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = value.replace("$$", "\u{0}");
    for i in interpolations(value) {
        let expr = format!("${{{}{}}}", i.name, i.modifier);
        let value = vars
            .get(&i.name)
            .unwrap_or_else(|| panic!("${{{}}} is not set in .env.example", i.name));
        out = out.replace(&expr, value);
    }
    out.replace('\u{0}', "$")
}

/// The `host:container[:mode]` parts of a short-syntax volume, or the long syntax's source and target.
fn volume(v: &Yaml) -> (String, String) {
    if let Some(s) = v.as_str() {
        let mut parts = s.splitn(3, ':');
        let source = parts.next().unwrap_or_default().to_owned();
        let target = parts
            .next()
            .unwrap_or_else(|| panic!("volume '{s}' names where it is mounted"));
        (source, target.to_owned())
    } else {
        let part = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        (part("source"), part("target"))
    }
}

/// Every `${VAR}` the compose file uses is `${VAR:?message}` and set in `.env.example`, and
/// `.env.example` sets nothing the compose file does not use.
#[test]
fn the_compose_file_parses_and_takes_every_variable_from_env_example() {
    let c = compose();
    let vars = env_example();
    let mut values = Vec::new();
    strings(&c, &mut values);
    let mut used = BTreeSet::new();
    for value in values {
        for i in interpolations(value) {
            assert!(
                vars.contains_key(&i.name),
                "${{{}}} is used by docker-compose.yml but not set in .env.example",
                i.name
            );
            assert!(
                i.modifier.starts_with(":?") && i.modifier.len() > 2,
                "${{{}{}}}: write ${{{}:?what to set}} so that a missing .env stops compose with a message",
                i.name,
                i.modifier,
                i.name
            );
            used.insert(i.name);
        }
    }
    let unused: Vec<&String> = vars.keys().filter(|k| !used.contains(*k)).collect();
    assert!(unused.is_empty(), ".env.example sets unused {unused:?}");
}

/// No password, token or secret is written in the compose file: each comes from `.env`, which git
/// and the image's build context ignore, and `.env.example` holds only placeholders.
#[test]
fn no_secret_is_written_in_the_compose_file() {
    let c = compose();
    let text = read("docker-compose.yml");
    for (name, service) in services(&c) {
        for (key, value) in environment(service) {
            let secret = ["PASSWORD", "TOKEN", "SECRET"]
                .iter()
                .any(|s| key.contains(s))
                || value.contains('@');
            if secret {
                assert!(
                    !interpolations(&value).is_empty(),
                    "{name}: {key} must come from .env (${{VAR:?...}}), not be written here"
                );
            }
        }
    }
    for (key, value) in env_example() {
        if ["PASSWORD", "TOKEN", "ACCOUNTS"]
            .iter()
            .any(|s| key.contains(s))
        {
            assert!(
                value.contains("change-me"),
                ".env.example: {key} is a placeholder"
            );
            assert!(
                !text.contains(&value),
                "{key}'s placeholder is written in docker-compose.yml"
            );
        }
    }
    let ignored = |file: &str| {
        read(file)
            .lines()
            .any(|l| l.trim() == ".env" || l.trim() == "/.env")
    };
    assert!(ignored(".gitignore"), ".env is in .gitignore");
    assert!(
        ignored(".dockerignore"),
        ".env is kept out of the image's build context"
    );
}

/// Every bind-mounted `./path` is in the repository, every named volume is declared (and every
/// declared one used), every `depends_on` names a service whose condition it can meet.
#[test]
fn every_mount_exists_and_every_dependency_is_a_service() {
    let c = compose();
    let services = services(&c);
    let declared: BTreeSet<&str> = entries(&c["volumes"]).into_iter().map(|(k, _)| k).collect();
    let mut named = BTreeSet::new();
    for (name, service) in &services {
        assert!(
            !service["image"].is_badvalue() || !service["build"].is_badvalue(),
            "{name} has an image or a build"
        );
        if let Some(context) = service["build"].as_str() {
            assert!(
                repo().join(context).join("Dockerfile").is_file(),
                "{name}: {context}/Dockerfile"
            );
        }
        for v in service["volumes"].as_vec().map_or(&[][..], Vec::as_slice) {
            let (source, target) = volume(v);
            assert!(
                target.starts_with('/'),
                "{name}: '{target}' is a container path"
            );
            if source.starts_with("./") || source.starts_with("../") {
                assert!(
                    repo().join(&source).exists(),
                    "{name} mounts {source}, which is not in the repository"
                );
            } else {
                assert!(
                    !source.starts_with('/'),
                    "{name}: no absolute host path ({source})"
                );
                assert!(
                    declared.contains(source.as_str()),
                    "{name} mounts the volume '{source}', which is not declared under volumes:"
                );
                named.insert(source);
            }
        }
        let deps = &service["depends_on"];
        let deps: Vec<(&str, &str)> = match deps.as_vec() {
            Some(list) => list
                .iter()
                .map(|d| (d.as_str().unwrap_or_default(), "service_started"))
                .collect(),
            None => entries(deps)
                .into_iter()
                .map(|(d, v)| (d, v["condition"].as_str().unwrap_or("service_started")))
                .collect(),
        };
        for (dep, condition) in deps {
            let peer = services
                .get(dep)
                .unwrap_or_else(|| panic!("{name} depends on '{dep}', which is not a service"));
            assert_ne!(dep, *name, "{name} depends on itself");
            match condition {
                "service_started" => {}
                "service_healthy" => assert!(
                    peer["healthcheck"]["test"]
                        .as_vec()
                        .is_some_and(|t| !t.is_empty()),
                    "{name} waits for {dep} to be healthy: {dep} needs a healthcheck"
                ),
                "service_completed_successfully" => assert_eq!(
                    peer["restart"].as_str(),
                    Some("no"),
                    "{name} waits for {dep} to complete: {dep} is a one-shot (restart: \"no\")"
                ),
                other => panic!("{name}: unknown depends_on condition '{other}'"),
            }
        }
    }
    let unused: Vec<&&str> = declared.iter().filter(|v| !named.contains(**v)).collect();
    assert!(
        unused.is_empty(),
        "volumes declared and never mounted: {unused:?}"
    );
    let sunshare = services["sunshare"];
    for peer in ["postgres", "mosquitto", "influxdb"] {
        assert_eq!(
            sunshare["depends_on"][peer]["condition"].as_str(),
            Some("service_healthy"),
            "sunshare starts once {peer} is healthy"
        );
    }
}

/// The deployment file the compose mounts, with the environment the compose gives Sunshare
/// (`.env.example`'s placeholders in), passes `check-config`'s check: every `SUNSHARE_*` name is a
/// real key, and storage, MQTT and the sink point at the compose's services.
#[test]
fn the_mounted_deployment_file_is_valid_with_the_compose_environment() {
    let c = compose();
    let vars = env_example();
    let sunshare = services(&c)["sunshare"];
    let mount = sunshare["volumes"]
        .as_vec()
        .into_iter()
        .flatten()
        .map(volume)
        .find(|(_, target)| target == "/etc/sunshare/sunshare.toml")
        .expect("the deployment file is mounted at /etc/sunshare/sunshare.toml");
    let command: Vec<String> = read("Dockerfile")
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .and_then(|json| serde_json::from_str(json).ok())
        .expect("the Dockerfile's CMD, a JSON list");
    assert_eq!(
        command,
        ["serve", "--config", "/etc/sunshare/sunshare.toml"]
    );
    let env: Vec<(String, String)> = environment(sunshare)
        .into_iter()
        .map(|(k, v)| (k, substituted(&v, &vars)))
        .collect();
    assert!(
        env.iter().all(|(k, _)| k.starts_with("SUNSHARE_")),
        "{env:?}"
    );
    let d = sunshare::config::Deployment::from_str_with_env(
        &mount.0,
        &read(&mount.0),
        &env,
        &sunshare::app::known_models(),
    )
    .unwrap_or_else(|e| panic!("{} with the compose environment: {e}", mount.0));
    // What `sunshare serve` checks besides: every MQTT device's logger is declared.
    sunshare::collect::mqtt::check(&d).unwrap_or_else(|e| {
        panic!(
            "{}'s MQTT loggers with the compose environment: {e}",
            mount.0
        )
    });
    let influx = d.influx.expect("the sink is on");
    assert_eq!(influx.url, "http://influxdb:8086");
    assert_eq!(
        (influx.org, influx.bucket),
        (vars["INFLUX_ORG"].clone(), vars["INFLUX_BUCKET"].clone())
    );
    let mqtt = d.mqtt.expect("MQTT is on");
    assert_eq!(mqtt.broker.as_deref(), Some("mosquitto:1883"));
    assert_eq!(
        mqtt.username.as_deref(),
        Some("sunshare"),
        "the ACL's user for Sunshare"
    );
    let http = env
        .iter()
        .find(|(k, _)| k == "SUNSHARE_HTTP__LISTEN")
        .expect("listen");
    let port = http.1.rsplit(':').next().unwrap_or_default();
    let check = sunshare["healthcheck"]["test"]
        .as_vec()
        .expect("sunshare has a healthcheck")
        .iter()
        .filter_map(Yaml::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        check.contains(&format!("http://127.0.0.1:{port}/healthz")),
        "the health check asks /healthz where Sunshare listens: {check}"
    );
    assert!(
        read("src/http/mod.rs").contains(".get(\"/healthz\", Access::PUBLIC"),
        "/healthz is a public route"
    );
    // The example logger account in .env.example is a logger the mounted file declares.
    for account in vars["MQTT_LOGGER_ACCOUNTS"].split_whitespace() {
        let id = account.split(':').next().unwrap_or_default();
        assert!(
            d.devices.iter().any(|dev| matches!(
                &dev.transport,
                sunshare::domain::Transport::Mqtt { logger, .. } if logger == id
            )),
            "{id} is a data logger of {}",
            mount.0
        );
    }
}

/// The image is built in one stage and run from a slim second one, as a user that is not root,
/// with the health check's tool installed.
#[test]
fn the_image_is_multi_stage_and_runs_as_non_root() {
    let dockerfile = read("Dockerfile");
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    assert!(stages[0].ends_with(" AS build"), "{stages:?}");
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap_or_default();
    assert!(
        runtime.starts_with("debian:") && runtime.contains("slim"),
        "{runtime}"
    );
    assert!(
        runtime.contains("COPY --from=build"),
        "the runtime stage copies the binary only"
    );
    assert!(
        !runtime.contains("cargo "),
        "nothing is built in the runtime stage"
    );
    let user = runtime
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER in the runtime stage");
    assert!(!["root", "0"].contains(&user.trim()), "runs as {user}");
    let c = compose();
    let check = services(&c)["sunshare"]["healthcheck"]["test"][1]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        runtime.contains(&format!(" {check}")) || check == "sunshare",
        "the health check's '{check}' is installed in the runtime image"
    );
}

/// Grafana reads the dashboards where its provisioning looks, and its datasource gets every
/// variable it interpolates from the compose environment.
#[test]
fn grafana_is_provisioned_from_the_mounted_dashboards() {
    let c = compose();
    let grafana = services(&c)["grafana"];
    let mounts: BTreeMap<String, String> = grafana["volumes"]
        .as_vec()
        .into_iter()
        .flatten()
        .map(volume)
        .collect();
    assert_eq!(
        mounts.get("./dashboards/provisioning").map(String::as_str),
        Some("/etc/grafana/provisioning")
    );
    let provider = yaml("dashboards/provisioning/dashboards/sunshare.yaml");
    let path = provider["providers"][0]["options"]["path"]
        .as_str()
        .expect("a file provider's path");
    assert_eq!(mounts.get("./dashboards").map(String::as_str), Some(path));
    let datasource_text = read("dashboards/provisioning/datasources/sunshare-influxdb.yaml");
    let datasource = yaml("dashboards/provisioning/datasources/sunshare-influxdb.yaml");
    assert_eq!(
        datasource["datasources"][0]["uid"].as_str(),
        Some("sunshare-influx")
    );
    assert_eq!(
        datasource["datasources"][0]["jsonData"]["version"].as_str(),
        Some("Flux")
    );
    let env: BTreeMap<String, String> = environment(grafana).into_iter().collect();
    let mut needed = 0;
    for part in datasource_text.split("${").skip(1) {
        let var = part.split('}').next().unwrap_or_default();
        needed += 1;
        assert!(env.contains_key(var), "grafana's environment sets {var}");
    }
    assert!(
        needed >= 4,
        "url, org, bucket and token come from the environment"
    );
    let influx: BTreeMap<String, String> =
        environment(services(&c)["influxdb"]).into_iter().collect();
    for (grafana_var, influx_var) in [
        ("SUNSHARE_INFLUX_ORG", "DOCKER_INFLUXDB_INIT_ORG"),
        ("SUNSHARE_INFLUX_BUCKET", "DOCKER_INFLUXDB_INIT_BUCKET"),
        ("SUNSHARE_INFLUX_TOKEN", "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"),
    ] {
        assert_eq!(
            env[grafana_var], influx[influx_var],
            "Grafana and InfluxDB's set-up agree on {grafana_var}"
        );
    }
}

/// Mosquitto takes no anonymous client and reads the password file and ACL the one-shot service
/// writes; the ACL lets Sunshare read, and each logger write only under its own id, every topic of
/// every logger template in `firmware-config/loggers/`.
#[test]
fn mosquitto_has_accounts_and_an_acl_for_every_logger_topic() {
    let c = compose();
    let s = services(&c);
    let conf = read("deploy/mosquitto/mosquitto.conf");
    let setting = |key: &str| {
        conf.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
            .unwrap_or_else(|| panic!("mosquitto.conf sets {key}"))
            .trim()
            .to_owned()
    };
    assert_eq!(setting("allow_anonymous"), "false");
    let broker_mounts: BTreeMap<String, String> = s["mosquitto"]["volumes"]
        .as_vec()
        .into_iter()
        .flatten()
        .map(|v| {
            let (source, target) = volume(v);
            (target, source)
        })
        .collect();
    let init_mounts: BTreeMap<String, String> = s["mosquitto-passwd"]["volumes"]
        .as_vec()
        .into_iter()
        .flatten()
        .map(volume)
        .collect();
    for key in ["password_file", "acl_file"] {
        let file = setting(key);
        let dir = file.rsplit_once('/').map(|(d, _)| d).unwrap_or_default();
        let volume = broker_mounts
            .get(dir)
            .unwrap_or_else(|| panic!("{file} is in a volume the broker mounts"));
        assert_eq!(
            init_mounts.get(volume).map(String::as_str),
            Some(dir),
            "the one-shot service writes {file} into the same volume"
        );
    }
    let script = read("deploy/mosquitto/make-passwd.sh");
    assert!(
        script.contains("mosquitto_passwd -b"),
        "hashed with mosquitto_passwd"
    );
    assert!(script.contains("$MQTT_SUNSHARE_PASSWORD") && script.contains("$MQTT_LOGGER_ACCOUNTS"));
    let acl = read("deploy/mosquitto/acl");
    let lines: Vec<&str> = acl
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let sunshare_reads: Vec<&str> = lines
        .iter()
        .skip_while(|l| **l != "user sunshare")
        .skip(1)
        .take_while(|l| !l.starts_with("user ") && !l.starts_with("pattern "))
        .filter_map(|l| l.strip_prefix("topic read "))
        .collect();
    let patterns: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("pattern "))
        .collect();
    assert!(
        patterns
            .iter()
            .all(|p| p.starts_with("write ") && p.contains("/%u/")),
        "a pattern lets a logger write only under its own id: {patterns:?}"
    );
    let mut templates = 0;
    for entry in std::fs::read_dir(repo().join("firmware-config/loggers")).expect("templates") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let template: toml::Table = toml::from_str(&std::fs::read_to_string(&path).expect("read"))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let topic = template["topic"].as_str().expect("topic");
        let any = |t: &str| {
            ["{station}", "{device}", "{unit}", "{logger}"]
                .iter()
                .fold(t.to_owned(), |t, p| t.replace(p, "+"))
        };
        let own = any(&topic.replace("{logger}", "%u"));
        assert!(
            patterns.contains(&format!("write {own}").as_str()),
            "{}: the ACL lets a logger write {own}",
            path.display()
        );
        assert!(
            sunshare_reads.contains(&any(topic).as_str()),
            "{}: the ACL lets Sunshare read {}",
            path.display(),
            any(topic)
        );
        templates += 1;
    }
    assert!(templates >= 2, "json_generic and modbus_forward");
    let check = s["mosquitto"]["healthcheck"]["test"][1]
        .as_str()
        .unwrap_or_default();
    assert!(
        check.contains("-u sunshare") && check.contains("$$MQTT_SUNSHARE_PASSWORD"),
        "{check}"
    );
}

/// `deploy/mosquitto` with a real broker (SUNSHARE_TEST_MOSQUITTO names the binary): the one-shot
/// script builds the password file from the environment, and Mosquitto with the committed conf and
/// ACL (only its paths and port changed) refuses an anonymous or wrong-password login, delivers to
/// Sunshare's account what a logger writes on its own topic, and drops what the logger writes on
/// another logger's topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_broker_keeps_each_logger_to_its_own_topic() -> anyhow::Result<()> {
    use anyhow::Context as _;
    use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet, QoS};
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    let Some(broker) = std::env::var_os("SUNSHARE_TEST_MOSQUITTO") else {
        eprintln!("SKIPPED (Mosquitto) the_deploy_broker_keeps_each_logger_to_its_own_topic: set SUNSHARE_TEST_MOSQUITTO=/usr/sbin/mosquitto to run it");
        return Ok(());
    };
    let broker = std::path::PathBuf::from(broker);
    let dir = tempfile::tempdir()?;
    // mosquitto_passwd is beside the broker or on PATH (Debian: /usr/sbin and /usr/bin).
    let path = std::env::join_paths(broker.parent().map(Path::to_path_buf).into_iter().chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))?;
    let made = Command::new("sh")
        .arg(repo().join("deploy/mosquitto/make-passwd.sh"))
        .env("PATH", path)
        .env("AUTH_DIR", dir.path())
        .env("ACL_SRC", repo().join("deploy/mosquitto/acl"))
        .env("AUTH_OWNER", "")
        .env("MQTT_SUNSHARE_PASSWORD", "sunshare-pw-1")
        .env("MQTT_LOGGER_ACCOUNTS", "dtu-1:pw:with:colons dtu-2:pw-2")
        .output()?;
    anyhow::ensure!(
        made.status.success(),
        "make-passwd.sh: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let passwd = std::fs::read_to_string(dir.path().join("passwd"))?;
    let users: Vec<&str> = passwd.lines().filter_map(|l| l.split(':').next()).collect();
    assert_eq!(users, ["sunshare", "dtu-1", "dtu-2"]);
    assert!(
        !passwd.contains("sunshare-pw-1") && !passwd.contains("pw-2"),
        "only hashes"
    );
    let bad = Command::new("sh")
        .arg(repo().join("deploy/mosquitto/make-passwd.sh"))
        .env("AUTH_DIR", dir.path())
        .env("AUTH_OWNER", "")
        .env("MQTT_SUNSHARE_PASSWORD", "x")
        .env("MQTT_LOGGER_ACCOUNTS", "dtu-3")
        .output()?;
    assert!(
        !bad.status.success(),
        "an account without a password is refused"
    );
    assert!(
        dir.path().join("passwd").is_file(),
        "a refused run leaves the last good file"
    );

    // The committed conf, with the volume's paths, a free loopback port and no persistence.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let committed = read("deploy/mosquitto/mosquitto.conf");
    let auth = format!("{}/", dir.path().display());
    let mut conf = String::new();
    let mut changed = 0;
    for line in committed.lines() {
        let line = match line {
            "listener 1883" => format!("listener {port} 127.0.0.1"),
            "persistence true" => "persistence false".to_owned(),
            l if l.starts_with("persistence_location") => String::new(),
            l if l.contains("/mosquitto/auth/") => l.replace("/mosquitto/auth/", &auth),
            l => {
                conf.push_str(l);
                conf.push('\n');
                continue;
            }
        };
        changed += 1;
        conf.push_str(&line);
        conf.push('\n');
    }
    assert_eq!(
        changed, 5,
        "listener, persistence, its location, password and ACL files"
    );
    // Started as root, Mosquitto would switch to the `mosquitto` account, which cannot read this
    // private directory; started by anyone else it stays who it is.
    conf.push_str("user root\n");
    std::fs::write(dir.path().join("mosquitto.conf"), conf)?;
    let mut child = Command::new(&broker)
        .arg("-c")
        .arg(dir.path().join("mosquitto.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", broker.display()))?;
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let log = child.stderr.take().context("the broker's log")?;
    let _broker = Kill(child);
    // The broker logs "running" once its listener is open: read its log until then, and keep
    // reading it afterwards so that it never blocks on a full pipe.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut ready = Some(ready_tx);
        for line in std::io::BufReader::new(log).lines().map_while(Result::ok) {
            if line.contains(" running") {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(15))
        .context("mosquitto did not start with the deploy conf")?;

    let login = |client_id: &str, user: Option<(&str, &str)>| {
        let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5));
        if let Some((u, p)) = user {
            o.set_credentials(u, p);
        }
        AsyncClient::new(o, 10)
    };
    // What the broker answers to a CONNECT: Ok once accepted.
    async fn connack(el: &mut rumqttc::EventLoop) -> Result<(), ConnectionError> {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), el.poll()).await {
                Err(_) => return Err(ConnectionError::NetworkTimeout),
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => return Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }
    let refused = |r: Result<(), ConnectionError>| {
        matches!(
            r,
            Err(ConnectionError::ConnectionRefused(
                rumqttc::ConnectReturnCode::NotAuthorized
                    | rumqttc::ConnectReturnCode::BadUserNamePassword
            ))
        )
    };
    let (_c, mut el) = login("deploy-anonymous", None);
    assert!(refused(connack(&mut el).await), "anonymous is refused");
    let (_c, mut el) = login("deploy-wrong", Some(("dtu-1", "pw-2")));
    assert!(
        refused(connack(&mut el).await),
        "a wrong password is refused"
    );

    // Sunshare's account subscribes to every logger's telemetry.
    let (sunshare, mut sub_el) = login("deploy-sunshare", Some(("sunshare", "sunshare-pw-1")));
    connack(&mut sub_el).await?;
    sunshare
        .subscribe("sunshare/+/+/telemetry", QoS::AtLeastOnce)
        .await?;
    let (got_tx, mut got) = tokio::sync::mpsc::unbounded_channel();
    let (suback_tx, suback) = tokio::sync::oneshot::channel();
    let sub_task = tokio::spawn(async move {
        let mut suback_tx = Some(suback_tx);
        while let Ok(event) = sub_el.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(a)) => {
                    if let Some(tx) = suback_tx.take() {
                        let _ = tx.send(a.return_codes);
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let _ =
                        got_tx.send((p.topic, String::from_utf8_lossy(&p.payload).into_owned()));
                }
                _ => {}
            }
        }
    });
    let codes = tokio::time::timeout(Duration::from_secs(10), suback).await??;
    assert!(
        codes
            .iter()
            .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_))),
        "{codes:?}"
    );

    // Logger dtu-1 writes another logger's topic, then its own: the first is acknowledged and
    // dropped, so the first message Sunshare's account gets is the second.
    let (logger, mut pub_el) = login("deploy-dtu-1", Some(("dtu-1", "pw:with:colons")));
    connack(&mut pub_el).await?;
    let (acked_tx, mut acked) = tokio::sync::mpsc::unbounded_channel();
    let pub_task = tokio::spawn(async move {
        while let Ok(event) = pub_el.poll().await {
            if let Event::Incoming(Packet::PubAck(_)) = event {
                let _ = acked_tx.send(());
            }
        }
    });
    for (topic, payload) in [
        ("sunshare/QX-LC-01/dtu-2/telemetry", "forged"),
        ("sunshare/QX-LC-01/dtu-1/telemetry", "own"),
    ] {
        logger
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await?;
        tokio::time::timeout(Duration::from_secs(10), acked.recv())
            .await?
            .context("the broker's ack")?;
    }
    let first = tokio::time::timeout(Duration::from_secs(10), got.recv())
        .await?
        .context("Sunshare's account got nothing")?;
    assert_eq!(
        first,
        (
            "sunshare/QX-LC-01/dtu-1/telemetry".to_owned(),
            "own".to_owned()
        )
    );
    sub_task.abort();
    pub_task.abort();
    Ok(())
}
