"""The `ec2` provider: boto3 against AWS or any EC2-compatible endpoint."""

from cloudinitd.providers.ec2.provider import Ec2Provider

__all__ = ["Ec2Provider"]
