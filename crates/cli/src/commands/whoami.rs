//! `rampart whoami`: which tenant and role the token gives, to check a
//! token and a server address before using them.

use std::process::ExitCode;

use anyhow::Result;
use rampart_proto::WhoAmI;

use crate::client::Client;
use crate::render;
use crate::Format;

#[derive(clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

pub async fn run(client: Client, args: Args) -> Result<ExitCode> {
    let me: WhoAmI = client.get(&["whoami"]).await?;
    match args.output {
        Format::Json => render::print_json(&me)?,
        Format::Table => println!("{} in tenant {} ({})", me.actor, me.tenant, me.role),
    }
    Ok(ExitCode::SUCCESS)
}
