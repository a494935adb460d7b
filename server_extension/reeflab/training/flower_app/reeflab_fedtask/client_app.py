"""The ClientApp every site's SuperNode runs: trains and evaluates the default task on the site's own data.

The site's data partition comes from the SuperNode's node config (`site=N`, set by
`reeflab federated join --site N`); replace `federated_task.make_data` to federate a real dataset.
"""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from reeflab.training.federated_task import TaskClient

app = ClientApp()


def _site(context: Context) -> TaskClient:
    return TaskClient(site=int(context.node_config.get("site", 0)))


@app.train()
def train(msg: Message, context: Context) -> Message:
    client = _site(context)
    config = msg.content["config"]
    weights, examples, metrics = client.fit(
        msg.content["arrays"].to_numpy_ndarrays(),
        {"epochs": int(config.get("epochs", 1)), "proximal_mu": float(config.get("proximal-mu", 0.0))},
    )
    content = RecordDict(
        {"arrays": ArrayRecord(weights), "metrics": MetricRecord({**metrics, "num-examples": examples})}
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    client = _site(context)
    loss, examples, metrics = client.evaluate(msg.content["arrays"].to_numpy_ndarrays(), {})
    content = RecordDict({"metrics": MetricRecord({"loss": loss, **metrics, "num-examples": examples})})
    return Message(content=content, reply_to=msg)
