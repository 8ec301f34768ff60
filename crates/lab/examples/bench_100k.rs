//! Release-mode check of the performance targets: seed 100,000 users, then page through
//! them with listUser in pages of 1,000 over plain HTTP.
//!
//! `cargo run --release -p ucbridge-lab --example bench_100k`

use std::time::Instant;

use ucbridge_lab::{LabConfig, RunningLab};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let lab = RunningLab::start(LabConfig {
        users: 100_000,
        seed: 1,
        tls: false,
        ..LabConfig::default()
    })
    .await?;
    println!("seeded 100,000 users in {:?}", started.elapsed());

    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut total = 0usize;
    for page in 0.. {
        let body = format!(
            "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
             xmlns:ns=\"http://www.cisco.com/AXL/API/14.0\"><soapenv:Body><ns:listUser>\
             <searchCriteria><userid>%</userid></searchCriteria><returnedTags><firstName/>\
             <lastName/><userid/><mailid/><primaryExtension/><telephoneNumber/></returnedTags>\
             <skip>{}</skip><first>1000</first></ns:listUser></soapenv:Body></soapenv:Envelope>",
            page * 1000
        );
        let text = client
            .post(lab.axl_url())
            .basic_auth("administrator", Some("ucbridge-lab"))
            .header("SOAPAction", "CUCM:DB ver=14.0 listUser")
            .body(body)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let users = text.matches("<user uuid=").count();
        if users == 0 {
            break;
        }
        total += users;
    }
    println!(
        "listed {total} users in pages of 1,000 in {:?}",
        started.elapsed()
    );
    lab.shutdown().await;
    Ok(())
}
