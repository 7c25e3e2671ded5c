package proxy

import (
	"slices"

	"github.com/blindfold-dev/blindfold/policy"
)

// Every WorkflowService and OperatorService method is classified here by the action a caller needs on the request's
// namespace: policy.OpWorker, OpClientWrite, OpClientRead or OpAdmin (one model with the codec endpoint's decode and
// encode). A method missing from the table is denied, so one that a newer API adds stays closed until it is
// classified; TestEveryMethodClassified walks the service descriptors and fails on any method missing here.

const (
	wf = "/" + workflowServiceName + "/"
	op = "/" + operatorServiceName + "/"
)

// anyAction lets any caller holding some action on the namespace describe it: SDK workers and clients check that
// their namespace exists at start.
var anyAction = []policy.Operation{policy.OpWorker, policy.OpClientWrite, policy.OpClientRead, policy.OpAdmin}

// methodActions maps a full method name to the actions of which the caller needs one. nil means any authenticated
// caller: cluster-level calls every SDK makes when it connects (they name no namespace and carry no payloads).
var methodActions = map[string][]policy.Operation{
	// temporal.api.workflowservice.v1.WorkflowService
	wf + "RegisterNamespace":                            {policy.OpAdmin},
	wf + "DescribeNamespace":                            anyAction,
	wf + "ListNamespaces":                               nil,
	wf + "UpdateNamespace":                              {policy.OpAdmin},
	wf + "DeprecateNamespace":                           {policy.OpAdmin},
	wf + "StartWorkflowExecution":                       {policy.OpClientWrite},
	wf + "ExecuteMultiOperation":                        {policy.OpClientWrite},
	wf + "GetWorkflowExecutionHistory":                  {policy.OpClientRead},
	wf + "GetWorkflowExecutionHistoryReverse":           {policy.OpClientRead},
	wf + "PollWorkflowTaskQueue":                        {policy.OpWorker},
	wf + "RespondWorkflowTaskCompleted":                 {policy.OpWorker},
	wf + "RespondWorkflowTaskFailed":                    {policy.OpWorker},
	wf + "PollActivityTaskQueue":                        {policy.OpWorker},
	wf + "RecordActivityTaskHeartbeat":                  {policy.OpWorker},
	wf + "RecordActivityTaskHeartbeatById":              {policy.OpWorker},
	wf + "RespondActivityTaskCompleted":                 {policy.OpWorker},
	wf + "RespondActivityTaskCompletedById":             {policy.OpWorker},
	wf + "RespondActivityTaskFailed":                    {policy.OpWorker},
	wf + "RespondActivityTaskFailedById":                {policy.OpWorker},
	wf + "RespondActivityTaskCanceled":                  {policy.OpWorker},
	wf + "RespondActivityTaskCanceledById":              {policy.OpWorker},
	wf + "RequestCancelWorkflowExecution":               {policy.OpClientWrite},
	wf + "SignalWorkflowExecution":                      {policy.OpClientWrite},
	wf + "SignalWithStartWorkflowExecution":             {policy.OpClientWrite},
	wf + "ResetWorkflowExecution":                       {policy.OpClientWrite},
	wf + "TerminateWorkflowExecution":                   {policy.OpClientWrite},
	wf + "DeleteWorkflowExecution":                      {policy.OpClientWrite},
	wf + "ListOpenWorkflowExecutions":                   {policy.OpClientRead},
	wf + "ListClosedWorkflowExecutions":                 {policy.OpClientRead},
	wf + "ListWorkflowExecutions":                       {policy.OpClientRead},
	wf + "ListArchivedWorkflowExecutions":               {policy.OpClientRead},
	wf + "ScanWorkflowExecutions":                       {policy.OpClientRead},
	wf + "CountWorkflowExecutions":                      {policy.OpClientRead},
	wf + "GetSearchAttributes":                          {policy.OpClientRead},
	wf + "RespondQueryTaskCompleted":                    {policy.OpWorker},
	wf + "ResetStickyTaskQueue":                         {policy.OpWorker},
	wf + "ShutdownWorker":                               {policy.OpWorker},
	wf + "QueryWorkflow":                                {policy.OpClientRead},
	wf + "DescribeWorkflowExecution":                    {policy.OpClientRead},
	wf + "DescribeTaskQueue":                            {policy.OpClientRead},
	wf + "GetClusterInfo":                               nil,
	wf + "GetSystemInfo":                                nil,
	wf + "ListTaskQueuePartitions":                      {policy.OpClientRead},
	wf + "CreateSchedule":                               {policy.OpClientWrite},
	wf + "DescribeSchedule":                             {policy.OpClientRead},
	wf + "UpdateSchedule":                               {policy.OpClientWrite},
	wf + "PatchSchedule":                                {policy.OpClientWrite},
	wf + "ListScheduleMatchingTimes":                    {policy.OpClientRead},
	wf + "DeleteSchedule":                               {policy.OpClientWrite},
	wf + "ListSchedules":                                {policy.OpClientRead},
	wf + "CountSchedules":                               {policy.OpClientRead},
	wf + "UpdateWorkerBuildIdCompatibility":             {policy.OpAdmin},
	wf + "GetWorkerBuildIdCompatibility":                {policy.OpClientRead},
	wf + "UpdateWorkerVersioningRules":                  {policy.OpAdmin},
	wf + "GetWorkerVersioningRules":                     {policy.OpClientRead},
	wf + "GetWorkerTaskReachability":                    {policy.OpClientRead},
	wf + "DescribeDeployment":                           {policy.OpClientRead},
	wf + "DescribeWorkerDeploymentVersion":              {policy.OpClientRead},
	wf + "ListDeployments":                              {policy.OpClientRead},
	wf + "GetDeploymentReachability":                    {policy.OpClientRead},
	wf + "GetCurrentDeployment":                         {policy.OpClientRead},
	wf + "SetCurrentDeployment":                         {policy.OpAdmin},
	wf + "SetWorkerDeploymentCurrentVersion":            {policy.OpAdmin},
	wf + "DescribeWorkerDeployment":                     {policy.OpClientRead},
	wf + "DeleteWorkerDeployment":                       {policy.OpAdmin},
	wf + "DeleteWorkerDeploymentVersion":                {policy.OpAdmin},
	wf + "SetWorkerDeploymentRampingVersion":            {policy.OpAdmin},
	wf + "ListWorkerDeployments":                        {policy.OpClientRead},
	wf + "CreateWorkerDeployment":                       {policy.OpAdmin},
	wf + "CreateWorkerDeploymentVersion":                {policy.OpAdmin},
	wf + "UpdateWorkerDeploymentVersionComputeConfig":   {policy.OpAdmin},
	wf + "ValidateWorkerDeploymentVersionComputeConfig": {policy.OpAdmin},
	wf + "UpdateWorkerDeploymentVersionMetadata":        {policy.OpAdmin},
	wf + "SetWorkerDeploymentManager":                   {policy.OpAdmin},
	wf + "UpdateWorkflowExecution":                      {policy.OpClientWrite},
	wf + "PollWorkflowExecutionUpdate":                  {policy.OpClientRead},
	wf + "StartBatchOperation":                          {policy.OpClientWrite},
	wf + "StopBatchOperation":                           {policy.OpClientWrite},
	wf + "DescribeBatchOperation":                       {policy.OpClientRead},
	wf + "ListBatchOperations":                          {policy.OpClientRead},
	wf + "PollNexusTaskQueue":                           {policy.OpWorker},
	wf + "RespondNexusTaskCompleted":                    {policy.OpWorker},
	wf + "RespondNexusTaskFailed":                       {policy.OpWorker},
	wf + "UpdateActivityOptions":                        {policy.OpClientWrite},
	wf + "UpdateWorkflowExecutionOptions":               {policy.OpClientWrite},
	wf + "PauseActivity":                                {policy.OpClientWrite},
	wf + "UnpauseActivity":                              {policy.OpClientWrite},
	wf + "ResetActivity":                                {policy.OpClientWrite},
	wf + "CreateWorkflowRule":                           {policy.OpAdmin},
	wf + "DescribeWorkflowRule":                         {policy.OpClientRead},
	wf + "DeleteWorkflowRule":                           {policy.OpAdmin},
	wf + "ListWorkflowRules":                            {policy.OpClientRead},
	wf + "TriggerWorkflowRule":                          {policy.OpClientWrite},
	wf + "RecordWorkerHeartbeat":                        {policy.OpWorker},
	wf + "ListWorkers":                                  {policy.OpClientRead},
	wf + "CountWorkers":                                 {policy.OpClientRead},
	wf + "UpdateTaskQueueConfig":                        {policy.OpAdmin},
	wf + "FetchWorkerConfig":                            {policy.OpWorker},
	wf + "UpdateWorkerConfig":                           {policy.OpAdmin},
	wf + "DescribeWorker":                               {policy.OpClientRead},
	wf + "PauseWorkflowExecution":                       {policy.OpClientWrite},
	wf + "UnpauseWorkflowExecution":                     {policy.OpClientWrite},
	wf + "StartActivityExecution":                       {policy.OpClientWrite},
	wf + "StartNexusOperationExecution":                 {policy.OpClientWrite},
	wf + "DescribeActivityExecution":                    {policy.OpClientRead},
	wf + "DescribeNexusOperationExecution":              {policy.OpClientRead},
	wf + "PollActivityExecution":                        {policy.OpClientRead},
	wf + "PollNexusOperationExecution":                  {policy.OpClientRead},
	wf + "ListActivityExecutions":                       {policy.OpClientRead},
	wf + "ListNexusOperationExecutions":                 {policy.OpClientRead},
	wf + "CountActivityExecutions":                      {policy.OpClientRead},
	wf + "CountNexusOperationExecutions":                {policy.OpClientRead},
	wf + "RequestCancelActivityExecution":               {policy.OpClientWrite},
	wf + "RequestCancelNexusOperationExecution":         {policy.OpClientWrite},
	wf + "TerminateActivityExecution":                   {policy.OpClientWrite},
	wf + "DeleteActivityExecution":                      {policy.OpClientWrite},
	wf + "PauseActivityExecution":                       {policy.OpClientWrite},
	wf + "ResetActivityExecution":                       {policy.OpClientWrite},
	wf + "UnpauseActivityExecution":                     {policy.OpClientWrite},
	wf + "UpdateActivityExecutionOptions":               {policy.OpClientWrite},
	wf + "TerminateNexusOperationExecution":             {policy.OpClientWrite},
	wf + "DeleteNexusOperationExecution":                {policy.OpClientWrite},
	wf + "PollWorkflowExecutionTimeSkipping":            {policy.OpClientRead},
	// temporal.api.operatorservice.v1.OperatorService
	op + "AddSearchAttributes":      {policy.OpAdmin},
	op + "RemoveSearchAttributes":   {policy.OpAdmin},
	op + "ListSearchAttributes":     {policy.OpAdmin},
	op + "DeleteNamespace":          {policy.OpAdmin},
	op + "AddOrUpdateRemoteCluster": {policy.OpAdmin},
	op + "RemoveRemoteCluster":      {policy.OpAdmin},
	op + "ListClusters":             {policy.OpAdmin},
	op + "GetNexusEndpoint":         {policy.OpAdmin},
	op + "CreateNexusEndpoint":      {policy.OpAdmin},
	op + "UpdateNexusEndpoint":      {policy.OpAdmin},
	op + "DeleteNexusEndpoint":      {policy.OpAdmin},
	op + "ListNexusEndpoints":       {policy.OpAdmin},
}

// MethodActions returns the actions of which a caller of fullMethod needs one on the request's namespace, nil for a
// method any authenticated caller may call, and false for a method that is not classified (deny it).
func MethodActions(fullMethod string) ([]policy.Operation, bool) {
	ops, ok := methodActions[fullMethod]
	return slices.Clone(ops), ok
}
