SELECT '{{ ds }}' AS day, {{ params.limit }} AS n FROM {{ table }}
