//! `corral get KIND [NAME] [-n NS | -A] [-l SELECTOR] [-o wide|yaml|json|name] [-w]`:
//! kubectl-style tables, or the objects themselves in a form `apply` takes back.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use clap::Args;
use control_plane::api::labels::Selector;
use control_plane::api::{Deployment, Kind, Object, Pod, Time};
use control_plane::clock::{Clock, SystemClock};
use control_plane::CorralClient;

use super::columns::{headers, row, Item};
use super::replicasets;
use super::{Cli, CliError, Result};
use crate::output::{colour_stdout, Columns};
use crate::resource::{self, Resource};
use crate::watch::{self, Change, Follow};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GetFormat {
    /// The table with more columns (pods: IP and NODE).
    Wide,
    /// YAML documents, one per object (apply takes them back).
    Yaml,
    /// JSON: the object, or a List of them (apply takes it back).
    Json,
    /// kind/name per line.
    Name,
}

#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// KIND [NAME] or KIND/NAME: pods (po), deployments (deploy), replicasets (rs),
    /// services (svc), endpoints (ep), nodes (no), events (ev).
    #[arg(required = true, num_args = 1..=2)]
    pub target: Vec<String>,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Label selector, e.g. app=web,tier!=db.
    #[arg(short = 'l', long, default_value = "")]
    pub selector: String,
    #[arg(short, long, value_enum)]
    pub output: Option<GetFormat>,
    /// After listing, print every change as it happens (until Ctrl-C).
    #[arg(short, long)]
    pub watch: bool,
}

impl GetArgs {
    fn namespace(&self) -> &str {
        if self.all_namespaces {
            ""
        } else {
            &self.namespace
        }
    }
}

/// Lists `resource` in `namespace` (empty: all), or gets the one named.
pub async fn fetch(
    client: &CorralClient,
    resource: Resource,
    namespace: &str,
    selector: &str,
    name: Option<&str>,
) -> Result<Vec<Item>> {
    match (resource, name) {
        (Resource::Object(kind), Some(n)) => {
            Ok(vec![Item::Object(client.get_object(kind.plural(), namespace, n).await?)])
        }
        (Resource::Object(kind), None) => Ok(client
            .list_objects(kind.plural(), namespace, selector)
            .await?
            .0
            .into_iter()
            .map(Item::Object)
            .collect()),
        (Resource::ReplicaSet, name) => {
            let sel: Selector =
                selector.parse().map_err(|e| CliError::msg(format!("-l {selector:?}: {e}")))?;
            let deployments: Vec<Deployment> =
                typed(client.list_objects("deployments", namespace, "").await?.0);
            let pods: Vec<Pod> = typed(client.list_objects("pods", namespace, "").await?.0);
            let views = replicasets::views(&deployments, &pods)
                .into_iter()
                .filter(|r| name.is_none_or(|n| r.name == n))
                .filter(|r| sel.matches(&r.template.metadata.labels))
                .map(Item::ReplicaSet)
                .collect::<Vec<_>>();
            match (name, views.is_empty()) {
                (Some(n), true) => Err(CliError::msg(format!("replicasets.apps {n:?} not found"))),
                _ => Ok(views),
            }
        }
    }
}

/// The objects of one kind, typed.
pub fn typed<T: serde::de::DeserializeOwned>(objects: Vec<Object>) -> Vec<T> {
    objects.iter().filter_map(|o| control_plane::api::from_object(o).ok()).collect()
}

fn now() -> Time {
    SystemClock.now()
}

/// Prints one item in a machine format (`-o yaml|json|name`).
fn print_item(item: &Item, resource: Resource, format: GetFormat, first: bool) -> Result<()> {
    match format {
        GetFormat::Name => println!("{}/{}", resource.qualified(), item.name()),
        GetFormat::Json => println!("{}", serde_json::to_string_pretty(&item.to_value()).expect("json")),
        _ => {
            if !first {
                println!("---");
            }
            print!(
                "{}",
                serde_yaml_ng::to_string(&item.to_value()).map_err(|e| CliError::msg(e.to_string()))?
            );
        }
    }
    Ok(())
}

fn print_all(items: &[Item], resource: Resource, format: GetFormat, single: bool) -> Result<()> {
    if format == GetFormat::Json && !single {
        let values: Vec<serde_json::Value> = items.iter().map(Item::to_value).collect();
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": values});
        println!("{}", serde_json::to_string_pretty(&list).expect("json"));
        return Ok(());
    }
    for (i, item) in items.iter().enumerate() {
        print_item(item, resource, format, i == 0)?;
    }
    Ok(())
}

/// Prints tables, and later rows that line up with them.
struct TablePrinter {
    headers: Vec<&'static str>,
    wide: bool,
    with_ns: bool,
    columns: Option<Columns>,
}

impl TablePrinter {
    fn new(resource: Resource, args: &GetArgs) -> Self {
        let wide = args.output == Some(GetFormat::Wide);
        TablePrinter {
            headers: headers(resource, wide, args.all_namespaces),
            wide,
            with_ns: args.all_namespaces,
            columns: None,
        }
    }

    /// Prints `items` (the header first, unless printed already).
    fn print(&mut self, items: &[Item]) {
        let rows: Vec<Vec<String>> = items.iter().map(|i| row(i, now(), self.wide, self.with_ns)).collect();
        if self.columns.is_none() {
            if rows.is_empty() {
                return;
            }
            let cols = Columns::new(&self.headers, &rows, colour_stdout());
            println!("{}", cols.header(&self.headers));
            self.columns = Some(cols);
        }
        let cols = self.columns.as_ref().expect("set above");
        for r in &rows {
            println!("{}", cols.row(r));
        }
    }
}

pub async fn get(cli: &Cli, args: &GetArgs) -> Result<()> {
    let (resource, name) = resource::target(&args.target)?;
    let client = cli.client();
    if args.watch {
        return watch(&client, resource.kind("watching")?, name.as_deref(), args).await;
    }
    let items = fetch(&client, resource, args.namespace(), &args.selector, name.as_deref()).await?;
    match args.output {
        Some(f @ (GetFormat::Json | GetFormat::Yaml | GetFormat::Name)) => {
            print_all(&items, resource, f, name.is_some())
        }
        _ if items.is_empty() => {
            eprintln!("{}", no_resources(args, resource));
            Ok(())
        }
        _ => {
            TablePrinter::new(resource, args).print(&items);
            Ok(())
        }
    }
}

fn no_resources(args: &GetArgs, resource: Resource) -> String {
    match args.all_namespaces || !resource.namespaced() {
        true => "No resources found.".into(),
        false => format!("No resources found in {} namespace.", args.namespace),
    }
}

/// `get -w`: the listing, then every change of a listed (or named) object.
async fn watch(client: &CorralClient, kind: Kind, name: Option<&str>, args: &GetArgs) -> Result<()> {
    let resource = Resource::Object(kind);
    let mut table = TablePrinter::new(resource, args);
    // What was printed, by key and resourceVersion: a re-list prints only what changed meanwhile.
    let mut printed: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut first = true;
    let follow = Follow {
        kind,
        namespace: args.namespace(),
        selector: &args.selector,
        deadline: None,
        what: "changes",
    };
    let mut show = |o: &Object, printed: &mut BTreeMap<String, Option<String>>| -> Result<()> {
        let key = format!("{}/{}", o.namespace(), o.meta().name);
        if name.is_some_and(|n| n != o.meta().name) || printed.get(&key) == Some(&o.meta().resource_version) {
            return Ok(());
        }
        printed.insert(key, o.meta().resource_version.clone());
        let item = Item::Object(o.clone());
        match args.output {
            Some(f @ (GetFormat::Json | GetFormat::Yaml | GetFormat::Name)) => {
                print_item(&item, resource, f, first)?
            }
            _ => table.print(std::slice::from_ref(&item)),
        }
        first = false;
        Ok(())
    };
    let mut listed_once = false;
    let outcome: Result<()> = watch::follow(client, &follow, |seen, change| {
        let result = match change {
            Change::Listed => {
                let r = seen.values().try_for_each(|o| show(o, &mut printed));
                if !listed_once && printed.is_empty() && args.output.is_none_or(|f| f == GetFormat::Wide) {
                    eprintln!("{}", no_resources(args, resource));
                }
                listed_once = true;
                r
            }
            Change::Event { object, .. } => show(object, &mut printed),
        };
        match result {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(Err(e)),
        }
    })
    .await?;
    outcome
}
