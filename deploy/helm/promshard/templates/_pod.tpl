{{/* The pod template of the StatefulSet and the DaemonSet: the container
of deploy/base/statefulset.yaml and deploy/daemonset/daemonset.yaml. */}}
{{- define "promshard.podTemplate" -}}
{{- $mode := include "promshard.mode" . -}}
{{- $fullname := include "promshard.fullname" . -}}
metadata:
  labels:
    {{- include "promshard.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "promshard.serviceAccountName" . }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    fsGroup: 65532
    seccompProfile:
      type: RuntimeDefault
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.affinity }}
  affinity:
    {{- toYaml .Values.affinity | nindent 4 }}
  {{- else if eq $mode "statefulset" }}
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "promshard.selectorLabels" . | nindent 14 }}
  {{- end }}
  containers:
  - name: promshard
    image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
    {{- with .Values.image.pullPolicy }}
    imagePullPolicy: {{ . }}
    {{- end }}
    args:
    - run
    - --prometheus-agent={{ include "promshard.prometheusAgent" . }}
    - --storage.agent.path=/data
    - --web.listen-address=:{{ .Values.service.port }}
    - --remote-write.flush-deadline={{ .Values.flushDeadline }}
    - --cluster.listen-address=0.0.0.0:{{ .Values.gossip.port }}
    - --cluster.node-name=$(POD_NAME)
    - --cluster.advertise-address=$(POD_IP):{{ .Values.gossip.port }}
    - --cluster.join=dns+{{ include "promshard.gossipService" . }}.{{ .Release.Namespace }}.svc:{{ .Values.gossip.port }}
    - --cluster.secret-key-file=/etc/promshard/gossip/{{ .Values.gossip.secretKey }}
    {{- if eq $mode "daemonset" }}
    - --sharding.strategy=node
    {{- else }}
    {{- if gt (int .Values.statefulset.waitForSize) 0 }}
    - --cluster.wait-for-size={{ .Values.statefulset.waitForSize }}
    {{- end }}
    {{- if .Values.statefulset.zoneAware }}
    - --sharding.strategy=zone
    {{- end }}
    {{- end }}
    {{- range .Values.extraArgs }}
    - {{ . | quote }}
    {{- end }}
    env:
    {{- if eq $mode "statefulset" }}
    # Read by --sharding.zone; empty when the pod has no zone label.
    - name: ZONE
      valueFrom:
        fieldRef:
          fieldPath: metadata.labels['topology.kubernetes.io/zone']
    {{- end }}
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_IP
      valueFrom:
        fieldRef:
          fieldPath: status.podIP
    {{- if eq $mode "daemonset" }}
    # Read by --node-name.
    - name: NODE_NAME
      valueFrom:
        fieldRef:
          fieldPath: spec.nodeName
    {{- end }}
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    ports:
    - name: web
      containerPort: {{ .Values.service.port }}
      protocol: TCP
    - name: gossip-tcp
      containerPort: {{ .Values.gossip.port }}
      protocol: TCP
    - name: gossip-udp
      containerPort: {{ .Values.gossip.port }}
      protocol: UDP
    # WAL replay after a restart can take a while; liveness starts counting
    # only once the process answers.
    startupProbe:
      httpGet:
        path: /-/healthy
        port: web
      periodSeconds: 5
      failureThreshold: 60
    livenessProbe:
      httpGet:
        path: /-/healthy
        port: web
      periodSeconds: 10
      failureThreshold: 6
    readinessProbe:
      httpGet:
        path: /-/ready
        port: web
      periodSeconds: 5
      failureThreshold: 3
    resources:
      {{- toYaml (ternary .Values.daemonset.resources .Values.resources (eq $mode "daemonset")) | nindent 6 }}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities:
        drop: ["ALL"]
    volumeMounts:
    - name: data
      mountPath: /data
    - name: gossip-key
      mountPath: /etc/promshard/gossip
      readOnly: true
    - name: tmp
      mountPath: /tmp
  volumes:
  {{- if eq $mode "daemonset" }}
  # The WAL: an emptyDir survives container restarts, not the pod.
  - name: data
    emptyDir:
      sizeLimit: {{ .Values.daemonset.walSizeLimit }}
  {{- else if not .Values.statefulset.persistence.enabled }}
  - name: data
    emptyDir:
      sizeLimit: {{ .Values.statefulset.persistence.size }}
  {{- end }}
  # Mounted as a directory so that kubelet updates the keyring in place.
  - name: gossip-key
    secret:
      secretName: {{ include "promshard.gossipSecret" . }}
      defaultMode: 0440
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
{{- end }}
