//! What an instance's service has of its own besides the service: its network (made before
//! the service) and the volumes its tasks make on the nodes (removed after it).

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::NetworkCreateRequest;

use super::{swarm_err, SwarmEngine};
use crate::infra::container_spec::{ContainerSpec, LABEL_HOME, LABEL_INSTANCE};
use crate::infra::docker::{is_not_found, DockerError};

impl SwarmEngine {
    /// The instance's own network: overlay, internal (no gateway, no route out), and not
    /// attachable, so nothing but its service joins it.
    pub(super) async fn ensure_network(&self, spec: &ContainerSpec) -> Result<(), DockerError> {
        let name = &spec.name;
        match self
            .client
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(source) => {
                return Err(DockerError::Swarm {
                    action: "inspect an instance's network",
                    source,
                })
            }
        }
        let labels = HashMap::from([
            (LABEL_HOME.to_string(), spec.labels[LABEL_HOME].clone()),
            (
                LABEL_INSTANCE.to_string(),
                spec.labels[LABEL_INSTANCE].clone(),
            ),
        ]);
        self.client
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                driver: Some("overlay".to_string()),
                scope: Some("swarm".to_string()),
                internal: Some(true),
                attachable: Some(false),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map(drop)
            .map_err(swarm_err("create an instance's network"))
    }

    /// The volume definitions a removed service's tasks left on the nodes whose engines are
    /// reachable (the data is on the shared storage and stays): found by the instance's
    /// labels, removed once no container uses them (a task still stopping is waited for).
    pub(super) async fn remove_volumes(&self, labels: &HashMap<String, String>) {
        let (Some(home), Some(instance)) = (labels.get(LABEL_HOME), labels.get(LABEL_INSTANCE))
        else {
            return;
        };
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{LABEL_HOME}={home}"),
                format!("{LABEL_INSTANCE}={instance}"),
            ],
        )]);
        let mut engines = vec![self.client.clone()];
        for endpoint in self.settings.swarm.nodes.values() {
            engines.extend(self.node_client(endpoint).await.ok());
        }
        for engine in engines {
            let until = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let Ok(list) = engine
                    .list_volumes(Some(
                        bollard::query_parameters::ListVolumesOptionsBuilder::default()
                            .filters(&filters)
                            .build(),
                    ))
                    .await
                else {
                    break;
                };
                let mut left = 0;
                for v in list.volumes.unwrap_or_default() {
                    if engine
                        .remove_volume(
                            &v.name,
                            None::<bollard::query_parameters::RemoveVolumeOptions>,
                        )
                        .await
                        .is_err()
                    {
                        left += 1;
                    }
                }
                if left == 0 || tokio::time::Instant::now() >= until {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}
