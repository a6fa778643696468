//! `sinew events …`: the event store of the control plane's broker — its
//! topics, a topic's events as they arrive, a key's history, and the
//! dead-letter queue (list and replay).

use std::io::Write;

use bytes::Bytes;
use serde_json::Value;

use super::client::{self, Client, ServerArgs};
use super::get::print_out;

/// Inspect and replay the event broker's topics.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List topics: namespace, name, partitions, events retained.
    Topics,
    /// Print a topic's events as they arrive (every partition), until Ctrl-C.
    Tail {
        /// The topic.
        topic: String,
        #[command(flatten)]
        at: At,
        /// Start with the oldest retained events instead of new ones.
        #[arg(long)]
        from_start: bool,
    },
    /// Print the events of one partition key, oldest first (event sourcing).
    History {
        /// The topic.
        topic: String,
        /// The partition key (`ce-partitionkey`).
        #[arg(long)]
        key: String,
        #[command(flatten)]
        at: At,
        /// Most events printed.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// The dead-letter queue of a topic (`TOPIC.dlq`).
    Dlq {
        #[command(subcommand)]
        command: Dlq,
    },
}

#[derive(Debug, clap::Subcommand)]
enum Dlq {
    /// Print the dead-lettered events with why and after how many attempts.
    List {
        /// The topic whose dead letters to list.
        topic: String,
        #[command(flatten)]
        at: At,
    },
    /// Publish dead-lettered events to their topic again, under new ids.
    Replay {
        /// The topic whose dead letters to replay.
        topic: String,
        /// Only the event with this id.
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        at: At,
    },
}

/// Which namespace a topic is in.
#[derive(Debug, clap::Args)]
struct At {
    /// The topic's namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
}

pub(crate) fn run(args: Args) -> Result<(), String> {
    let client = args.server.client()?;
    match args.command {
        Command::Topics => topics(&client),
        Command::Tail {
            topic,
            at,
            from_start,
        } => client::block_on(tail(&client, &at.namespace, &topic, from_start)),
        Command::History {
            topic,
            key,
            at,
            limit,
        } => {
            let path = format!(
                "{}?key={}&limit={limit}",
                events_path(&at.namespace, &topic),
                client::segment(&key)
            );
            let reply = client::block_on(client.get(&path))?;
            if reply.status.as_u16() != 200 {
                return Err(reply.error());
            }
            print_events(&reply.body["events"])
        }
        Command::Dlq {
            command: Dlq::List { topic, at },
        } => {
            let dlq = format!("{topic}.dlq");
            let partitions = partitions(&client, &at.namespace, &dlq)?;
            for partition in 0..partitions {
                let path = format!(
                    "{}?partition={partition}&limit=10000",
                    events_path(&at.namespace, &dlq)
                );
                let reply = client::block_on(client.get(&path))?;
                if reply.status.as_u16() != 200 {
                    return Err(reply.error());
                }
                print_events(&reply.body["events"])?;
            }
            Ok(())
        }
        Command::Dlq {
            command: Dlq::Replay { topic, id, at },
        } => {
            let mut path = format!(
                "/v1/topics/{}/{}/dlq/replay",
                client::segment(&at.namespace),
                client::segment(&topic)
            );
            if let Some(id) = id {
                path.push_str(&format!("?id={}", client::segment(&id)));
            }
            let reply = client::block_on(client.post(&path, &[], Bytes::new()))?;
            if reply.status.as_u16() != 200 {
                return Err(reply.error());
            }
            print_out(&format!(
                "replayed {} event(s) to {topic}\n",
                reply.body["replayed"]
            ))
        }
    }
}

fn events_path(namespace: &str, topic: &str) -> String {
    format!(
        "/v1/topics/{}/{}/events",
        client::segment(namespace),
        client::segment(topic)
    )
}

fn topics(client: &Client) -> Result<(), String> {
    let reply = client::block_on(client.get("/v1/topics"))?;
    if reply.status.as_u16() != 200 {
        return Err(reply.error());
    }
    let mut out = String::from("NAMESPACE  TOPIC  PARTITIONS  EVENTS\n");
    for t in reply.body["items"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{}  {}  {}  {}\n",
            t["namespace"].as_str().unwrap_or(""),
            t["topic"].as_str().unwrap_or(""),
            t["partitions"],
            t["events"]
        ));
    }
    print_out(&out)
}

/// The partition count of a topic, from the topic list (0 when absent).
fn partitions(client: &Client, namespace: &str, topic: &str) -> Result<u64, String> {
    let reply = client::block_on(client.get("/v1/topics"))?;
    if reply.status.as_u16() != 200 {
        return Err(reply.error());
    }
    Ok(reply.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["namespace"] == namespace && t["topic"] == topic)
        .and_then(|t| t["partitions"].as_u64())
        .unwrap_or(0))
}

/// One line per event: partition/offset, id, key, attributes, data.
fn print_events(events: &Value) -> Result<(), String> {
    let mut out = String::new();
    for e in events.as_array().into_iter().flatten() {
        let attributes: Vec<String> = e["attributes"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        let data = e["data"].as_str().map_or_else(
            || format!("base64:{}", e["data_base64"].as_str().unwrap_or("")),
            str::to_owned,
        );
        out.push_str(&format!(
            "{}/{}  id={}  key={}  {}  {data}\n",
            e["partition"],
            e["offset"],
            e["id"].as_str().unwrap_or(""),
            e["key"].as_str().unwrap_or(""),
            attributes.join(" "),
        ));
    }
    print_out(&out)
}

/// Follows every partition with long polls, printing events as they come.
async fn tail(
    client: &Client,
    namespace: &str,
    topic: &str,
    from_start: bool,
) -> Result<(), String> {
    let reply = client.get("/v1/topics").await?;
    if reply.status.as_u16() != 200 {
        return Err(reply.error());
    }
    let item = reply.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["namespace"] == namespace && t["topic"] == topic)
        .cloned()
        .ok_or_else(|| format!("no topic {topic} in namespace {namespace} (yet)"))?;
    // Each partition from its end (new events only) or its first offset.
    let mut next: Vec<u64> = item["offsets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|range| range[usize::from(!from_start)].as_u64().unwrap_or(0))
        .collect();
    if next.is_empty() {
        return Err(format!("topic {topic} has no partitions"));
    }
    let base = events_path(namespace, topic);
    // One long poll per partition in turn, short enough to go round often.
    let wait = (500 / next.len()).max(10);
    loop {
        for (p, at) in next.iter_mut().enumerate() {
            let path = format!("{base}?partition={p}&from={at}&wait={wait}&limit=1000");
            let reply = client.get(&path).await?;
            if reply.status.as_u16() != 200 {
                return Err(reply.error());
            }
            print_events(&reply.body["events"])?;
            let _ = std::io::stdout().flush();
            *at = reply.body["next"].as_u64().unwrap_or(*at);
        }
    }
}
