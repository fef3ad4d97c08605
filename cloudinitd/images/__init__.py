"""Images on clouds: list, save a running instance, stage a disk file, test it in one go.

naming.py   where a staged file lives (the Nimbus/Cumulus convention) and the `storage:` key
staging.py  the resumable multipart upload to the cloud's S3-compatible store
test_vm.py  `image test`: ExTENCI's extenci-test-vm as one command, with recorded clean-up
The EC2 calls themselves live in cloudinitd/providers/ec2/images.py.
"""
