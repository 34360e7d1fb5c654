"""AWS adapters and Lambda handlers: the same stages on S3, SQS, SageMaker and Lambda.

Modules: `s3_store` (ObjectStore on S3), `sqs_queue` (Queue on SQS), `config` (settings from
environment variables and SSM Parameter Store), `sagemaker` (ModelHost on SageMaker endpoints,
training-job launcher), `training` (in-function or SageMaker training, per dataset),
`hosting` (one endpoint per dataset kept in step with the registry: switches, canaries,
retirement), `training_failures` (failed training jobs recorded on their runs), `handlers`
(the Lambda entry points), `container` (the SageMaker training/serving image
entry point) and `ops` (the `automlops aws ...` operator commands over the use cases, also
run as `python -m automlops.aws`).
Nothing here is imported by the local runtime: boto3 loads only in aws mode.
"""
