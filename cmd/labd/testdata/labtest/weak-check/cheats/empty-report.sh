#!/usr/bin/env bash
# expect-fail: Write a report
touch report.txt
