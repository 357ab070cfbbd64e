"""The Python peer of an Orderflow function: the init a Powertools SQS consumer does.

Module level is the cold start: Logger, a BatchProcessor for SQS partial batch responses,
the DynamoDB idempotency layer, and boto3 clients for EventBridge (publishing), DynamoDB (the
function's own table) and SQS (dead-lettering), as the Rust functions build theirs at start.
"""

import os

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

logger = Logger(service=os.environ["AWS_LAMBDA_FUNCTION_NAME"])
processor = BatchProcessor(event_type=EventType.SQS)
persistence = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"])
idempotency = IdempotencyConfig(event_key_jmespath="messageId")
events = boto3.client("events")
dynamodb = boto3.client("dynamodb")
sqs = boto3.client("sqs")
EVENT_BUS = os.environ["EVENT_BUS_NAME"]


@idempotent_function(data_keyword_argument="record", config=idempotency, persistence_store=persistence)
def record_handler(record):
    events.put_events(Entries=[{"EventBusName": EVENT_BUS, "Source": "coldstart", "DetailType": "Seen", "Detail": record["body"]}])
    return {"messageId": record["messageId"]}


@logger.inject_lambda_context
def handler(event, context):
    idempotency.register_lambda_context(context)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
