"""Counts or drops a bucket's objects on the S3 service AWS_ENDPOINT_URL names
(boto3, from the cluster services' venv), for the benchmark scripts:
    python s3-objects.py count BUCKET [PREFIX]   prints how many objects
    python s3-objects.py drop BUCKET             deletes them and the bucket
"""
import os
import sys

import boto3

s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ.get("AWS_REGION", "us-east-1"))
op, bucket = sys.argv[1], sys.argv[2]
prefix = sys.argv[3] if len(sys.argv) > 3 else ""
pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
try:
    keys = [o["Key"] for p in pages for o in p.get("Contents", [])]
except s3.exceptions.NoSuchBucket:
    keys = None
if op == "count":
    print(len(keys or []))
elif keys is not None:
    for i in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]]})
    s3.delete_bucket(Bucket=bucket)
